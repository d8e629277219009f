#!/usr/bin/env python3
"""A partner's consumer of Rapport events: aiokafka + ``rapport-contracts`` (the partner package:
the event models and the CloudEvents Kafka binding; pydantic and standardwebhooks are all it
brings), nothing of Rapport's servers.

It reads the shared topics, decodes every record's CloudEvents headers (Kafka binary mode) and
validates its data with the model of its ``ce_type`` (``rapport_contracts.binding.decode_record``),
checks the record key and ``ce_dataschema``, deduplicates by ``ce_id``, and tolerates what the
contract says a reader must tolerate (unknown event types are skipped, unknown fields are ignored).

    pip install -r requirements.txt        # rapport-contracts, aiokafka
    python consumer.py --bootstrap localhost:9092 --until-caught-up

``--until-caught-up`` reads every partition from the beginning up to its end offset at start and
exits (no consumer group, nothing committed); without it the consumer joins ``--group`` and follows
the topics, committing offsets after each record is handled. The exit status is 1 when any record
was invalid. ``--report FILE`` writes one JSON line per record (topic, partition, offset, key,
ce_type, ce_id, valid, errors); a summary is printed on stdout as JSON. ``--schemas DIR`` (the
published ``docs/events/schemas/events``) makes ``ce_dataschema`` match those files' ``$id``;
without it, the URI ``rapport_contracts`` derives (base ``RAPPORT_SCHEMA_BASE_URI``).

Against the secure profile's TLS listener, as the partner principal Rapport gave you:

    python consumer.py --bootstrap kafka.example.org:9094 --sasl-username partner-demo \
        --sasl-password "$PW" --cafile kafka-ca.pem --group partner-demo-analytics

(``--cafile``: the CA that signed the broker's certificate; without it the system's CAs are used.
``--sasl-*`` without ``--cafile`` or ``--tls`` is SASL_PLAINTEXT, for a broker on your own host.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import ssl
import sys
from collections import Counter
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from rapport_contracts.binding import decode_record
from rapport_contracts.envelope import EnvelopeError, schema_uri
from rapport_contracts.topics import SHARED_TOPICS


def load_schema_ids(directory: Path) -> dict[str, str]:
    """ce_type → the ``$id`` of its published JSON Schema (files ``<type>.json``)."""
    ids = {}
    for path in sorted(directory.glob("*.json")):
        schema = json.loads(path.read_text())
        ids[schema.get("x-cloudevents-type", path.stem)] = schema["$id"]
    if not ids:
        raise SystemExit(f"no schemas in {directory}")
    return ids


class Validator:
    def __init__(self, schema_ids: dict[str, str] | None = None) -> None:
        self.schema_ids = schema_ids

    def check(self, key: bytes | None, value: bytes | None, raw_headers) -> tuple[str, dict | None, list[str]]:
        """("valid" | "invalid" | "unknown_type", data, errors)."""
        errors: list[str] = []
        headers = {name: (raw or b"").decode("utf-8", "replace") for name, raw in raw_headers or ()}
        # The key is the partition key (the episode): a partner's ordering depends on it.
        if key is None or key.decode("utf-8", "replace") != headers.get("ce_subject"):
            errors.append("key: differs from ce_subject")
        try:
            event, data = decode_record(value, list(raw_headers or ()))
        except EnvelopeError as exc:
            return "invalid", None, [str(exc), *errors]
        if data is None:
            return ("invalid", None, errors) if errors else ("unknown_type", None, [f"unknown ce_type {event.type}"])
        expected = self.schema_ids.get(event.type) if self.schema_ids is not None else schema_uri(event.type)
        if event.dataschema != expected:
            errors.append(f"header ce_dataschema: {event.dataschema!r} is not {expected!r}")
        return ("invalid" if errors else "valid"), data.model_dump(mode="json"), errors


class Partner:
    """What a partner does with each valid event: here, count it and remember the episodes."""

    def __init__(self) -> None:
        self.seen_ids: set[str] = set()
        self.by_type: Counter[str] = Counter()
        self.episodes: set[str] = set()

    def handle(self, ce_id: str, ce_type: str, episode: str, data: dict) -> bool:
        if ce_id in self.seen_ids:  # at-least-once delivery: apply each event once
            return False
        self.seen_ids.add(ce_id)
        self.by_type[ce_type] += 1
        self.episodes.add(episode)
        return True


async def run(args: argparse.Namespace) -> int:
    validator = Validator(load_schema_ids(args.schemas) if args.schemas else None)
    partner = Partner()
    counts: Counter[str] = Counter()
    report = open(args.report, "w") if args.report else None
    consumer = AIOKafkaConsumer(
        **connection(args),
        group_id=None if args.until_caught_up else args.group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        client_id="partner-example",
    )
    await consumer.start()
    try:
        if args.until_caught_up:
            admin = AIOKafkaAdminClient(client_id="partner-example", **connection(args))
            await admin.start()
            try:
                described = await admin.describe_topics(args.topics)
            finally:
                await admin.close()
            tps = [TopicPartition(d["topic"], p["partition"]) for d in described if d["error_code"] == 0
                   for p in sorted(d["partitions"], key=lambda p: p["partition"])]
            end = {}
            if tps:
                consumer.assign(tps)
                await consumer.seek_to_beginning(*tps)
                end = await consumer.end_offsets(tps)
            remaining = {tp for tp in tps if end[tp] > 0}
        else:
            consumer.subscribe(args.topics)
            remaining = None
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        while not stop.is_set() and (remaining is None or remaining):
            batch = await consumer.getmany(timeout_ms=500, max_records=500)
            for tp, records in batch.items():
                for r in records:
                    if remaining is not None and r.offset >= end[tp]:
                        continue
                    try:
                        status, data, errors = validator.check(r.key, r.value, r.headers)
                    except (RecursionError, MemoryError) as exc:  # e.g. JSON nested deeper than the parser goes
                        status, data, errors = "invalid", None, [f"value: cannot be checked ({type(exc).__name__})"]
                    h = {k: (v or b"").decode("utf-8", "replace") for k, v in r.headers or ()}
                    counts[status] += 1
                    if status == "valid" and not partner.handle(h["ce_id"], h["ce_type"], h["ce_subject"], data):
                        counts["duplicates"] += 1
                    if status == "invalid":
                        print(f"INVALID {r.topic}/{r.partition}@{r.offset}: " + "; ".join(errors), file=sys.stderr)
                    if report:
                        report.write(json.dumps({
                            "topic": r.topic, "partition": r.partition, "offset": r.offset,
                            "key": r.key.decode("utf-8", "replace") if r.key is not None else None,
                            "ce_type": h.get("ce_type"), "ce_id": h.get("ce_id"), "status": status,
                            "valid": status == "valid", "errors": errors}) + "\n")
                if not args.until_caught_up:
                    await consumer.commit()  # after handling: at-least-once, duplicates dropped above
            if remaining is not None:
                for tp in list(remaining):
                    if await consumer.position(tp) >= end[tp]:
                        remaining.discard(tp)
    finally:
        await consumer.stop()
        if report:
            report.close()
    summary = {"records": sum(counts[s] for s in ("valid", "invalid", "unknown_type")),
               "valid": counts["valid"], "invalid": counts["invalid"], "unknown_types": counts["unknown_type"],
               "duplicates": counts["duplicates"], "episodes": len(partner.episodes),
               "by_type": dict(sorted(partner.by_type.items()))}
    print(json.dumps(summary, indent=2))
    return 1 if counts["invalid"] else 0


def connection(args: argparse.Namespace) -> dict:
    """aiokafka's connection options: plain, SASL_PLAINTEXT, or SASL_SSL (TLS, broker verified)."""
    kw: dict = {"bootstrap_servers": args.bootstrap}
    tls = args.tls or args.cafile is not None
    if args.sasl_username:
        kw.update(security_protocol="SASL_SSL" if tls else "SASL_PLAINTEXT", sasl_mechanism=args.sasl_mechanism,
                  sasl_plain_username=args.sasl_username, sasl_plain_password=args.sasl_password)
    elif tls:
        kw.update(security_protocol="SSL")
    if tls:
        kw["ssl_context"] = ssl.create_default_context(cafile=args.cafile)
    return kw


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bootstrap", default="localhost:9092")
    p.add_argument("--schemas", type=Path,
                   help="directory of the published JSON Schemas (<type>.json): ce_dataschema must be their $id")
    p.add_argument("--topics", type=lambda s: [t for t in s.split(",") if t], default=list(SHARED_TOPICS))
    p.add_argument("--group", default="partner-example", help="consumer group when following")
    p.add_argument("--until-caught-up", action="store_true",
                   help="read from the beginning to the current end, then exit (no group, nothing committed)")
    p.add_argument("--report", type=Path, help="write one JSON line per record here")
    p.add_argument("--sasl-username", help="your partner principal (secure profile)")
    p.add_argument("--sasl-password")
    p.add_argument("--sasl-mechanism", default="PLAIN")
    p.add_argument("--tls", action="store_true", help="connect over TLS, trusting the system's CAs")
    p.add_argument("--cafile", help="connect over TLS, trusting this CA (PEM)")
    return asyncio.run(run(p.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
