"""Where the CPU went during a window: CPU seconds of given processes and how busy the whole
machine was (Linux /proc; empty where it is not available). Read twice, subtract — no sampling."""

from __future__ import annotations

import os
from dataclasses import dataclass

TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class Snapshot:
    processes: dict[str, float]  # name → CPU seconds (user + system) so far
    busy: float                  # machine: non-idle jiffies, all CPUs
    total: float


def _process_seconds(pid: int) -> float | None:
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()  # noqa: SIM115
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def snapshot(pids: dict[str, int]) -> Snapshot:
    procs = {name: s for name, pid in pids.items() if (s := _process_seconds(pid)) is not None}
    try:
        jiffies = [int(x) for x in open("/proc/stat").readline().split()[1:]]  # noqa: SIM115
    except OSError:
        return Snapshot(procs, 0.0, 0.0)
    idle = jiffies[3] + jiffies[4]  # idle + iowait
    return Snapshot(procs, sum(jiffies) - idle, sum(jiffies))


def summary(before: Snapshot, after: Snapshot, seconds: float) -> str:
    """'machine 87% busy; CPU s: intake 1.2, ...' over the window between the two snapshots."""
    parts = []
    if after.total > before.total:
        parts.append(f"machine {(after.busy - before.busy) / (after.total - before.total):.0%} busy")
    per = [f"{name} {after.processes[name] - s:.1f}" for name, s in before.processes.items() if name in after.processes]
    if per:
        parts.append(f"CPU s in {seconds:.1f} s: " + ", ".join(per))
    return "; ".join(parts)
