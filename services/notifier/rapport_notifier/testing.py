"""Test support (loopback outside world) for the notifier's tests: a real SMTP server (aiosmtpd), a tiny SMS
provider and webhook receivers (stdlib HTTP servers), plus helpers to publish events exactly as
the services would (rapport_shared.envelope) and to drive simulated time."""

from __future__ import annotations

import asyncio
import email
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from email import policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
from aiosmtpd.controller import Controller

from rapport_shared import envelope
from rapport_shared.clock import current_tick, publish_tick
from rapport_shared.contracts.base import EventData
from rapport_shared.private_contacts import ContactRecordV1, Keyring, encode_contact, ensure_private_topic
from rapport_shared.testing.kafka import produce_raw
from rapport_shared.testing.services import free_port
from rapport_shared.topics import PRIVATE_CONTACTS


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope_):
        msg = email.message_from_bytes(envelope_.content, policy=policy.default)
        with self.lock:
            self.messages.append(msg)
        return "250 OK"


class SmtpServer:
    """A real SMTP server on loopback; ``messages`` is everything it accepted (no dedupe)."""

    def __init__(self) -> None:
        self.inbox = _Inbox()
        self.port = free_port()
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)

    @property
    def messages(self):
        with self.inbox.lock:
            return list(self.inbox.messages)

    def to(self, address: str):
        return [m for m in self.messages if m["To"] == address]


class HttpSink:
    """Records POSTs; ``behaviour`` = ok | fail (500) | hang."""

    def __init__(self, behaviour: str = "ok") -> None:
        self.behaviour = behaviour
        self.requests: list[tuple[str, dict, bytes]] = []
        sink = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                sink.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                if sink.behaviour == "hang":
                    time.sleep(30)
                code = 500 if sink.behaviour == "fail" else 200
                self.send_response(code)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), H)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()




def notifier_env(smtp: SmtpServer, **extra: str) -> dict[str, str]:
    return {"RAPPORT_CLOCK": "simulated", "RAPPORT_SMTP_HOST": "127.0.0.1", "RAPPORT_SMTP_PORT": str(smtp.port),
            "RAPPORT_WEBHOOK_ALLOW_HTTP": "true", "RAPPORT_SENDER_POLL_INTERVAL_S": "0.2",
            "RAPPORT_TIMER_POLL_INTERVAL_S": "0.2", "RAPPORT_SEND_TIMEOUT_S": "2", "RAPPORT_RETRY_BASE_S": "0.2",
            "RAPPORT_RETRY_MAX_S": "1", "RAPPORT_RETRY_FOR_S": "4", **extra}


async def publish(bootstrap: str, data: EventData, *, source: str, at: datetime, event_id: str | None = None) -> str:
    event = envelope.new_event(type=data.event_type, source=source, subject=str(data.episode_id), data=data, time=at,
                               id=event_id)
    rec = envelope.encode(event)
    await produce_raw(bootstrap, data.topic, rec.value, rec.key, rec.headers)
    return event.id


async def publish_contact(bootstrap: str, record: ContactRecordV1) -> None:
    await ensure_private_topic(bootstrap, 3, 1)
    rec = encode_contact(record, Keyring.development())
    await produce_raw(bootstrap, PRIVATE_CONTACTS, rec.value, rec.key, rec.headers)


class SimTime:
    """Simulated time for one test: starts after any tick already on the topic (time only moves forward)."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.now: datetime | None = None

    async def start(self) -> datetime:
        current = await current_tick(self.bootstrap)
        base = max(current or datetime.now(timezone.utc), datetime.now(timezone.utc)) + timedelta(days=1)
        self.now = base.replace(hour=6, minute=0, second=0, microsecond=0)
        await publish_tick(self.bootstrap, self.now)
        return self.now

    async def to(self, t: datetime) -> None:
        assert t > self.now
        self.now = t
        await publish_tick(self.bootstrap, t)


async def until(predicate, timeout: float = 90, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = predicate()
        if asyncio.iscoroutine(got):
            got = await got
        if got:
            return got
        await asyncio.sleep(0.3)
    raise TimeoutError(f"timed out waiting for {what}")


def api(url: str, token: str, method: str, path: str, **kw) -> httpx.Response:
    return httpx.request(method, f"{url}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=30, **kw)


def new_id() -> uuid.UUID:
    return uuid.uuid4()
