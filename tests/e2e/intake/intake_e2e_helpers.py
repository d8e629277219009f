"""Helpers for intake's end-to-end tests: a partner's plain-aiokafka view of the topics, and
the intake API as a client calls it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import jsonschema
from aiokafka import AIOKafkaConsumer

SCHEMAS = __import__("rapport_tools.contracts.export", fromlist=["x"]).SCHEMA_DIR


class PlainConsumer:
    """Reads a topic from the beginning with a bare AIOKafkaConsumer (no group, nothing from
    the services' code) until a record matches."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap

    async def first(self, topic: str, predicate, timeout: float = 90):
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=self.bootstrap, group_id=None,
                                    auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        try:
            deadline = time.monotonic() + timeout  # a guard against hanging, not a timing assertion
            while time.monotonic() < deadline:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    for m in records:
                        if predicate(m):
                            return m
            raise TimeoutError(f"no matching record on {topic} within {timeout}s")
        finally:
            await consumer.stop()


def headers(record) -> dict[str, str]:
    return {k: (v or b"").decode() for k, v in record.headers}


def validate_event(record) -> dict:
    """As a partner: CloudEvents binary-mode headers, value against the committed JSON Schema."""
    h = headers(record)
    assert h["ce_specversion"] == "1.0" and h["content-type"] == "application/json"
    schema = json.loads((SCHEMAS / f"{h['ce_type']}.json").read_text())
    assert h["ce_dataschema"] == schema["$id"] and h["ce_source"] == "/rapport/intake"
    data = json.loads(record.value)
    jsonschema.validate(data, schema)
    assert record.key.decode() == h["ce_subject"] == data["episode_id"]
    return data


class Api:
    def __init__(self, url: str, tokens) -> None:
        self.url, self.tokens = url, tokens
        self.http = httpx.Client(timeout=30)

    def call(self, method: str, path: str, body=None, *, role: str = "intake_clinician", sub: str = "ic-e2e",
             org: str | None = None) -> httpx.Response:
        """As ``sub`` with ``role``, acting for ``org`` (default: the issuer's, TEST_ORG)."""
        token = self.tokens.issue(sub, [role], org=org)
        return self.http.request(method, f"{self.url}{path}", json=body, headers={"Authorization": f"Bearer {token}"})
