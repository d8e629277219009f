"""Hostile-record fuzzing against the four services (issue 11, item 4):
``uv run python bench/fuzz.py --per-topic 10000``.

Starts PostgreSQL, Kafka and the four services as bench/run.py does (bench/stack.py,
bench/services.py), then produces ``--per-topic`` hostile records (rapport_testing.fuzz:
schema-generated events broken by Hypothesis, and hand-made hostile shapes) to every topic a
consumer group reads, in ``--rounds`` batches, each followed by a marker record on every partition;
waits until every group has committed past every marker, and prints one line per topic and group:

  produced / processed (ended without a dead letter: ignored, skipped) / dead-lettered / blocked

``blocked`` counts records at or after a group's committed offset when the run ended: it must be 0.
The clock topic, which no group reads (``SimulatedClock`` assigns and seeks), is fuzzed on a scratch
topic: a SimulatedClock must start over the hostile ticks and reach the marker tick.
Exit status 1 if anything is blocked, dead-lettered twice, or refused yet not dead-lettered.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/fuzz.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--per-topic", type=int, default=500, metavar="N", help="hostile records per topic (default 500)")
    p.add_argument("--rounds", type=int, default=None, metavar="R",
                   help="batches, each followed by markers (default: one per 2,500 records, at least 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pool", type=int, default=20, metavar="K",
                   help="schema-generated examples per event type that the mutations start from (default 20)")
    p.add_argument("--big", type=int, default=None, metavar="B",
                   help="records of ~1 MB per kind and round (default: one per 1,000 records)")
    p.add_argument("--clock", type=int, default=None, metavar="N", help="hostile ticks on the scratch clock topic"
                   " (default: min(per-topic, 2000))")
    p.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="seconds each round may take to pass its markers (default: 120 + per-topic / 20)")
    args = p.parse_args(argv)
    args.rounds = args.rounds or max(2, args.per_topic // 2500)
    args.clock = args.clock if args.clock is not None else min(args.per_topic, 2000)
    args.timeout = args.timeout or 120 + args.per_topic / 20
    return args


async def fuzz_services(args: argparse.Namespace, stack, log_dir: Path) -> int:
    from services import running_services

    from rapport_testing import fuzz

    fuzz.set_pool_size(args.pool)
    say = lambda s: print(s, flush=True)  # noqa: E731
    print("starting the four services ...", flush=True)
    async with running_services(stack, log_dir) as running:
        started = time.monotonic()
        tallies, records = await fuzz.run(running.bootstrap, args.per_topic, rounds=args.rounds, seed_value=args.seed,
                                          timeout=args.timeout, big_cap=args.big, log=say)
        clock = await fuzz.fuzz_clock(running.bootstrap, args.clock, seed_value=args.seed)
        seconds = time.monotonic() - started
        alive = {name: svc.running() for name, svc in running.system.services.items()}
    print()
    print(fuzz.summary(tallies))
    print(clock.line())
    blocked = sum(t.blocked for t in tallies) + (0 if clock.started and clock.reached_marker else 1)
    doubled = sum(t.doubled for t in tallies)
    missing = [r for t in tallies for r in t.missing_dead_letters]
    omitted = sum(t.value_omitted for t in tallies)
    kinds = len({r.kind.split(":")[0].split("+")[0] for r in records})
    print(f"\nhostile records: {len(records)} in {kinds} kinds ({args.rounds} rounds, seed {args.seed}); "
          f"dead letters without their value: {omitted}; dead-lettered twice: {doubled}; "
          f"refused but not dead-lettered: {len(missing)}; blocked: {blocked}; "
          f"services still running: {all(alive.values())}; {seconds:.0f} s; logs in {log_dir}")
    for r in missing[:10]:
        print(f"  NOT DEAD-LETTERED {r.topic}/{r.partition}@{r.offset} {r.kind}")
    return 1 if blocked or doubled or missing or not all(alive.values()) else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from stack import SetupError, log_to_file, running_stack

    log_dir = Path(tempfile.mkdtemp(prefix="rapport-fuzz-"))
    log_to_file(log_dir / "fuzz.log")
    print(f"fuzz: {args.per_topic} hostile records per topic; {os.cpu_count()} cores; logs in {log_dir}", flush=True)
    try:
        with running_stack() as stack:
            print(f"infrastructure: {stack.describe()}", flush=True)
            return asyncio.run(fuzz_services(args, stack, log_dir))
    except SetupError as exc:
        print(f"cannot run: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
