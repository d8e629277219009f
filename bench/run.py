"""Rapport's benchmarks: ``uv run python bench/run.py [--only NAME] [--n N] [--json FILE]``.

Starts real PostgreSQL and Kafka as the test suite does (the locally built images
rapport/postgres:15 and rapport/kafka:4.3.1: ``bash deploy/build-images.sh --infra-only``), runs
the benchmarks, prints a table of figures and removes everything it started. What each benchmark
times is in its module's docstring and in docs/performance.md. Nothing here asserts a speed.

  relay     (a) outbox writes, relay backlog drain, commit → publish latency   n = events
            next to a bare aiokafka producer on the same broker, and the ratio
  consumer  (b) EventConsumer + BatchSubscriber: inbox + effect + offset commit n = events
            (one INSERT, and outcomes' own handlers), next to a bare aiokafka
            consumer group on the same records, and the ratio
  e2e       (c) the four services as processes, intakes over HTTP → Kafka       n = episodes
  replay    (d) `rapport-outcomes replay run` over the e2e cohort               n = episodes
            next to a bare aiokafka consumer group over the same topics
  safety    (e) PHQ-9 item 9 over HTTP → the clinician's delivered alert, with   n = alerts
            --backlog routine records queued for the notifier before it
The services' peak RSS is printed after e2e/replay/safety; the consumer benchmark prints its own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from figures import Figure, table

ROOT = Path(__file__).resolve().parent.parent
ORDER = ("relay", "consumer", "e2e", "replay", "safety")
SERVICE_BENCHMARKS = ("e2e", "replay", "safety")  # the ones that start the services as processes


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.split("\n\n")[0],
                                epilog="Use --only with --n: each benchmark reads n in its own unit.")
    p.add_argument("--only", action="append", choices=ORDER, metavar="NAME",
                   help=f"run only this benchmark (repeatable): {', '.join(ORDER)}")
    p.add_argument("--n", type=int, default=None, metavar="N",
                   help="size of each selected benchmark (events for relay/consumer, episodes for e2e/replay,"
                        " alerts for safety); default: each benchmark's own (relay 5000, consumer 20000, e2e 20,"
                        " safety 20)")
    p.add_argument("--interval", type=float, default=None, metavar="S",
                   help="e2e: seconds between intake starts (default 0.5; 0 = back to back)")
    p.add_argument("--backlog", type=int, default=None, metavar="N",
                   help="safety: routine records queued for the notifier before the alerts (default 50000; 0 = none)")
    p.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write the figures and the run's context as JSON")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = p.parse_args(argv)
    if args.n is not None and args.n < 1:
        p.error("--n must be at least 1")
    if args.backlog is not None and args.backlog < 0:
        p.error("--backlog must be 0 or more")
    if args.interval is not None and args.interval < 0:
        p.error("--interval must be 0 or more")
    args.selected = [b for b in ORDER if not args.only or b in args.only]
    return args


def context(argv: list[str]) -> dict:
    """What the figures were measured on."""
    def sh(*cmd: str) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=10).stdout.strip()
        except OSError:
            return ""

    return {
        "command": "uv run python bench/run.py" + "".join(f" {a}" for a in argv),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_commit": sh("git", "rev-parse", "--short", "HEAD"),
        "git_dirty": bool(sh("git", "status", "--porcelain", "--untracked-files=no")),
        "nproc": os.cpu_count(),
        "memory": next((line.split()[1] for line in sh("free", "-h").splitlines() if line.startswith("Mem:")), ""),
        "python": platform.python_version(),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }


async def run_selected(args: argparse.Namespace, stack, log_dir: Path) -> list[Figure]:
    figures: list[Figure] = []
    if "relay" in args.selected:
        import outbox_relay

        figures += await outbox_relay.run(stack, args.n)
    if "consumer" in args.selected:
        import consumer_inbox

        figures += await consumer_inbox.run(stack, args.n)
    if set(SERVICE_BENCHMARKS) & set(args.selected):
        import end_to_end
        import replay_run
        import safety
        from services import running_services

        import rss

        print("starting the services ...", flush=True)
        async with running_services(stack, log_dir) as running:
            if "e2e" in args.selected:
                e2e_figures, cohort = await end_to_end.run(running, args.n, args.interval)
                figures += e2e_figures
            elif "replay" in args.selected:  # a cohort to replay, as fast as it goes, not measured
                cohort, _ = await end_to_end.cohort(running, args.n or end_to_end.DEFAULT_EPISODES, 0)
            if "replay" in args.selected:
                figures += await replay_run.run(running, len(cohort))
            if "safety" in args.selected:  # last: it restarts the notifier and leaves a backlog on rapport.outcomes
                figures += await safety.run(running, args.n, args.backlog)
            ran = [b for b in SERVICE_BENCHMARKS if b in args.selected]
            figures += rss.service_figures(ran[0], running, " and ".join(ran))
    return figures


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    ctx = context(argv)
    from stack import SetupError, log_to_file, running_stack

    log_dir = Path(tempfile.mkdtemp(prefix="rapport-bench-"))
    log_to_file(log_dir / "bench.log")
    print(f"benchmarks: {', '.join(args.selected)}; logs in {log_dir}", flush=True)
    started = time.monotonic()
    try:
        with running_stack() as stack:
            print(f"infrastructure: {stack.describe()}", flush=True)
            figures = asyncio.run(run_selected(args, stack, log_dir))
    except SetupError as exc:
        print(f"cannot run the benchmarks: {exc}", file=sys.stderr)
        return 2
    ctx["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    ctx["seconds"] = round(time.monotonic() - started, 1)
    print()
    print(table(figures, markdown=args.markdown))
    print(f"\n{ctx['command']}  (commit {ctx['git_commit']}{' + local changes' if ctx['git_dirty'] else ''}, "
          f"{ctx['nproc']} cores, {ctx['memory']} RAM, load {ctx['loadavg_start']} → {ctx['loadavg_end']}, "
          f"{ctx['date']}, {ctx['seconds']} s)")
    if args.json:
        args.json.write_text(json.dumps({"context": ctx, "figures": [f.as_dict() for f in figures]}, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
