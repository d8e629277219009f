#!/usr/bin/env python3
"""A partner's consumer of Rapport events: plain aiokafka + jsonschema, nothing from Rapport's code.

It reads the shared topics, checks every record's CloudEvents headers (Kafka binary mode), picks the
published JSON Schema named by ``ce_type`` and validates the value against it, deduplicates by
``ce_id``, and tolerates what the contract says a reader must tolerate (unknown event types are
skipped, unknown fields are ignored because the schemas allow them).

    pip install aiokafka jsonschema
    python consumer.py --bootstrap localhost:9092 --schemas ../../docs/events/schemas/events --until-caught-up

``--until-caught-up`` reads every partition from the beginning up to its end offset at start and
exits (no consumer group, nothing committed); without it the consumer joins ``--group`` and follows
the topics, committing offsets after each record is handled. The exit status is 1 when any record
was invalid. ``--report FILE`` writes one JSON line per record (topic, partition, offset, key,
ce_type, ce_id, valid, errors); a summary is printed on stdout as JSON.

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
import uuid
from collections import Counter
from datetime import datetime
from pathlib import Path

import jsonschema
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

SHARED_TOPICS = ["rapport.intake", "rapport.course", "rapport.outcomes", "rapport.notifications"]
REQUIRED_HEADERS = ["ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time", "ce_subject", "ce_dataschema"]


def load_schemas(directory: Path) -> dict[str, dict]:
    """ce_type → its JSON Schema (each file is named ``<type>.json`` and carries ``x-cloudevents-type``)."""
    schemas = {}
    for path in sorted(directory.glob("*.json")):
        schema = json.loads(path.read_text())
        jsonschema.Draft202012Validator.check_schema(schema)
        schemas[schema.get("x-cloudevents-type", path.stem)] = schema
    if not schemas:
        raise SystemExit(f"no schemas in {directory}")
    return schemas


class Validator:
    def __init__(self, schemas: dict[str, dict]) -> None:
        self.schemas = schemas
        self.validators = {t: jsonschema.Draft202012Validator(s, format_checker=jsonschema.FormatChecker())
                           for t, s in schemas.items()}

    def check(self, key: bytes | None, value: bytes | None, raw_headers) -> tuple[str, dict | None, list[str]]:
        """("valid" | "invalid" | "unknown_type", data, errors)."""
        errors: list[str] = []
        headers: dict[str, str] = {}
        for name, raw in raw_headers or ():
            if name in headers:
                errors.append(f"header {name}: appears twice")
            try:
                headers[name] = (raw or b"").decode("utf-8")
            except UnicodeDecodeError:
                errors.append(f"header {name}: not UTF-8")
        for name in REQUIRED_HEADERS:
            if not headers.get(name):
                errors.append(f"header {name}: missing")
        if errors:
            return "invalid", None, errors
        if headers.get("content-type", "application/json").split(";")[0].strip() != "application/json":
            errors.append(f"header content-type: {headers['content-type']!r} is not application/json")
        if headers["ce_specversion"] != "1.0":
            errors.append(f"header ce_specversion: {headers['ce_specversion']!r} is not 1.0")
        try:
            uuid.UUID(headers["ce_id"])
        except ValueError:
            errors.append("header ce_id: not a UUID")
        try:
            t = datetime.fromisoformat(headers["ce_time"].replace("Z", "+00:00"))
            if t.tzinfo is None:
                errors.append("header ce_time: no UTC offset")
        except ValueError:
            errors.append("header ce_time: not RFC 3339")
        if key is None or key.decode("utf-8", "replace") != headers["ce_subject"]:
            errors.append("key: differs from ce_subject")
        ce_type = headers["ce_type"]
        schema = self.schemas.get(ce_type)
        if schema is None:
            return ("invalid", None, errors) if errors else ("unknown_type", None, [f"unknown ce_type {ce_type}"])
        if headers["ce_dataschema"] != schema.get("$id"):
            errors.append(f"header ce_dataschema: {headers['ce_dataschema']!r} is not {schema.get('$id')!r}")
        if value is None:
            return "invalid", None, errors + ["value: empty (tombstone)"]
        try:
            data = json.loads(value)
        except (UnicodeDecodeError, ValueError) as exc:
            return "invalid", None, errors + [f"value: not JSON ({exc})"]
        for err in sorted(self.validators[ce_type].iter_errors(data), key=lambda e: list(e.absolute_path)):
            where = ".".join(str(p) for p in err.absolute_path) or "(root)"
            errors.append(f"value {where}: {err.message}")
        if isinstance(data, dict) and "episode_id" in data and str(data["episode_id"]) != headers["ce_subject"]:
            errors.append("value episode_id: differs from ce_subject")
        return ("invalid" if errors else "valid"), data, errors


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
    validator = Validator(load_schemas(args.schemas))
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
    here = Path(__file__).resolve().parent
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bootstrap", default="localhost:9092")
    p.add_argument("--schemas", type=Path, default=here.parents[1] / "docs" / "events" / "schemas" / "events",
                   help="directory of the published JSON Schemas (<type>.json)")
    p.add_argument("--topics", type=lambda s: [t for t in s.split(",") if t], default=SHARED_TOPICS)
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
