"""Peak resident memory of the service processes (Linux ``/proc/<pid>/status``, ``VmHWM``: the
high-water mark since the process started), read while they still run."""

from __future__ import annotations

from figures import Figure


def peak_rss_mib(pid: int) -> float | None:
    try:
        for line in open(f"/proc/{pid}/status"):  # noqa: SIM115
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def service_figures(benchmark: str, running, what: str) -> list[Figure]:
    """One figure per service process of ``running`` (bench/services.Running)."""
    out = []
    for name, svc in running.system.services.items():
        if svc.proc is None or (mib := peak_rss_mib(svc.proc.pid)) is None:
            continue
        out.append(Figure(benchmark, f"{name}: peak RSS since start ({what})", 1, rate=mib, unit="MiB",
                          note="VmHWM of the service process"))
    return out
