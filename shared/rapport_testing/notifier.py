"""Test support (loopback outside world) for the notifier's tests: a real SMTP server (aiosmtpd) with its
provider's message status endpoint, a relay that requires TLS (STARTTLS or implicit) and AUTH with
its throwaway CA (``TlsRelay``, ``make_certificates``), a tiny SMS provider that deduplicates by ``Idempotency-Key`` and
webhook receivers (stdlib HTTP servers), plus helpers to publish events exactly as
the services would (rapport_shared.envelope) and to drive simulated time."""

from __future__ import annotations

import email
import ipaddress
import json
import ssl
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email import policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from rapport_shared import envelope
from rapport_shared.clock import current_tick, publish_tick
from rapport_shared.contracts.base import EventData
from rapport_shared.private_contacts import ContactRecordV1, Keyring, encode_contact, ensure_private_topic
from rapport_shared.topics import PRIVATE_CONTACTS

from .kafka import produce_raw
from .services import free_port
from .wait import until  # noqa: F401  (re-exported: the notifier tests import it from here)


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope_):
        msg = email.message_from_bytes(envelope_.content, policy=policy.default)
        with self.lock:  # stored before the 250 reply: "accepted" from the moment it could have been delivered
            self.messages.append(msg)
        return "250 OK"


def _bare_message_id(value: str) -> str:
    return value.strip().removeprefix("<").removesuffix(">")


class SmtpServer:
    """A real SMTP server on loopback; ``messages`` is everything it accepted (no dedupe).

    Alongside it, the mail provider's message status endpoint (docs/notifier.md, "Exactly once"):
    ``GET {status_url}?message_id=<Message-ID>`` with ``Authorization: Bearer <status_token>`` →
    ``200 {"accepted": true|false}``, answered from what the SMTP server has accepted.
    ``status_behaviour`` = ok | fail (503) | hang; ``lookups`` lists (Message-ID, answer) asked
    about (answer None when the endpoint failed)."""

    def __init__(self, status_token: str = "email-status-token") -> None:
        self.inbox = _Inbox()
        self.port = free_port()
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self.status_token = status_token
        self.status_behaviour = "ok"
        self.lookups: list[tuple[str, bool | None]] = []
        self.status_server: ThreadingHTTPServer | None = None

    def start(self) -> "SmtpServer":
        self.controller.start()
        smtp = self

        class Status(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                parts = urlsplit(self.path)
                ids = parse_qs(parts.query).get("message_id", [])
                if parts.path != "/v1/messages/status":
                    return self._answer(404, {"error": "not found"})
                if self.headers.get("Authorization") != f"Bearer {smtp.status_token}":
                    return self._answer(401, {"error": "unauthorized"})
                if len(ids) != 1:
                    return self._answer(400, {"error": "message_id required"})
                if smtp.status_behaviour == "hang":
                    time.sleep(30)
                if smtp.status_behaviour != "ok":
                    smtp.lookups.append((ids[0], None))
                    return self._answer(503, {"error": "unavailable"})
                accepted = smtp.accepted(ids[0])
                smtp.lookups.append((ids[0], accepted))
                self._answer(200, {"accepted": accepted})

            def _answer(self, code: int, body: dict) -> None:
                raw = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *a):
                pass

        self.status_server = ThreadingHTTPServer(("127.0.0.1", free_port()), Status)
        self.status_server.daemon_threads = True
        threading.Thread(target=self.status_server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.status_server is not None:
            self.status_server.shutdown()
            self.status_server.server_close()
        self.controller.stop()

    @property
    def status_url(self) -> str:
        assert self.status_server is not None, "start() first"
        return f"http://127.0.0.1:{self.status_server.server_address[1]}/v1/messages/status"

    def status_env(self) -> dict[str, str]:
        """The notifier settings that point its email status lookup here."""
        return {"RAPPORT_EMAIL_STATUS_URL": self.status_url, "RAPPORT_EMAIL_STATUS_TOKEN": self.status_token}

    def accepted(self, message_id: str) -> bool:
        want = _bare_message_id(message_id)
        return any(_bare_message_id(m["Message-ID"] or "") == want for m in self.messages)

    @property
    def messages(self):
        with self.inbox.lock:
            return list(self.inbox.messages)

    def to(self, address: str):
        return [m for m in self.messages if m["To"] == address]


@dataclass(frozen=True)
class Certificates:
    """A throwaway CA and a server certificate it signed (files in ``directory``)."""

    ca_file: str                 # the CA's certificate (PEM): what the client trusts
    cert_file: str               # the server's certificate (PEM)
    key_file: str                # the server's key (PEM, unencrypted)

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx


def make_certificates(directory: str | Path, names: tuple[str, ...] = ("localhost", "127.0.0.1"),
                      prefix: str = "relay") -> Certificates:
    """A new CA (EC P-256, one day) and a server certificate for ``names`` (DNS names or IP
    addresses, as subject alternative names), written to ``directory``."""
    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: PLC0415

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.now(timezone.utc) - timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"Rapport test CA {uuid.uuid4().hex[:8]}")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for n in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            sans.append(x509.DNSName(n))
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])).issuer_name(ca_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    files = Certificates(str(directory / f"{prefix}-ca.pem"), str(directory / f"{prefix}.pem"),
                         str(directory / f"{prefix}-key.pem"))
    Path(files.ca_file).write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    Path(files.cert_file).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    Path(files.key_file).write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    return files


class _RelayInbox(_Inbox):
    """Also records how each accepted message came: over TLS, and as which authenticated user."""

    def __init__(self) -> None:
        super().__init__()
        self.sessions: list[dict] = []

    async def handle_DATA(self, server, session, envelope_):  # noqa: N802
        with self.lock:
            tls = server.transport is not None and server.transport.get_extra_info("ssl_object") is not None
            self.sessions.append({"tls": tls, "authenticated": bool(session.authenticated),
                                  "user": session.auth_data,
                                  "mail_from": envelope_.mail_from, "rcpt_tos": list(envelope_.rcpt_tos)})
        return await super().handle_DATA(server, session, envelope_)


class _SmtpsController(Controller):
    """aiosmtpd counts only a STARTTLS upgrade as TLS for ``auth_require_tls``, so it would never
    offer AUTH on an SMTPS connection; every connection of this server is TLS from the first byte."""

    def factory(self):
        smtp = super().factory()
        smtp._auth_require_tls = False
        return smtp


class TlsRelay:
    """A mail relay on loopback as an organisation runs one: TLS (``mode`` = ``starttls``: STARTTLS
    required before anything else, port-587 style; ``implicit``: TLS from the first byte, SMTPS)
    and AUTH (PLAIN/LOGIN, only over TLS) required before MAIL FROM, with ``users`` (name →
    password). ``messages`` are what it accepted, ``sessions`` how (tls, authenticated, user);
    ``auth_attempts`` every AUTH tried (user, succeeded)."""

    def __init__(self, certs: Certificates, mode: str = "starttls", users: dict[str, str] | None = None) -> None:
        assert mode in ("starttls", "implicit")
        self.mode, self.certs = mode, certs
        self.users = dict(users or {"rapport": "relay-password"})
        self.auth_attempts: list[tuple[str, bool]] = []
        self.inbox = _RelayInbox()
        self.port = free_port()
        params: dict = {"auth_required": True, "auth_require_tls": True, "authenticator": self._authenticate}
        if mode == "starttls":
            params.update(tls_context=certs.server_context(), require_starttls=True)
        else:
            params.update(ssl_context=certs.server_context())
        self.controller = (Controller if mode == "starttls" else _SmtpsController)(
            self.inbox, hostname="127.0.0.1", port=self.port, **params)

    def _authenticate(self, server, session, envelope_, mechanism, auth_data) -> AuthResult:
        ok = False
        user = ""
        if isinstance(auth_data, LoginPassword):
            user = auth_data.login.decode(errors="replace")
            ok = self.users.get(user) is not None and self.users[user].encode() == auth_data.password
        self.auth_attempts.append((user, ok))
        return AuthResult(success=ok, handled=False, auth_data=user if ok else None)

    def start(self) -> "TlsRelay":
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    @property
    def messages(self):
        with self.inbox.lock:
            return list(self.inbox.messages)

    @property
    def sessions(self) -> list[dict]:
        with self.inbox.lock:
            return list(self.inbox.sessions)


class HttpSink:
    """Records POSTs; ``behaviour`` = ok | fail (500) | hang."""

    def __init__(self, behaviour: str = "ok") -> None:
        self.behaviour = behaviour
        self.requests: list[tuple[str, dict, bytes]] = []
        self.lock = threading.Lock()
        sink = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with sink.lock:
                    sink.requests.append((self.path, headers, body))
                if sink.behaviour == "hang":
                    time.sleep(30)
                code, answer = (500, b"{}") if sink.behaviour == "fail" else sink.accept(self.path, headers, body)
                self.send_response(code)
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), H)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def accept(self, path: str, headers: dict, body: bytes) -> tuple[int, bytes]:
        return 200, b"{}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()


class SmsProvider(HttpSink):
    """The loopback SMS provider: like a real one that honours ``Idempotency-Key``, a repeated key
    is answered as the first time and is not a second message. ``requests`` is every attempt;
    ``messages`` the distinct accepted messages, one per key."""

    def __init__(self, behaviour: str = "ok") -> None:
        self.accepted: dict[str, tuple[str, dict, bytes]] = {}
        super().__init__(behaviour)

    def accept(self, path: str, headers: dict, body: bytes) -> tuple[int, bytes]:
        key = headers.get("idempotency-key")
        if not key:
            return 400, b'{"error": "Idempotency-Key required"}'
        with self.lock:
            self.accepted.setdefault(key, (path, headers, body))
        return 200, json.dumps({"id": str(uuid.uuid5(uuid.NAMESPACE_URL, key))}).encode()

    @property
    def messages(self) -> list[tuple[str, dict, bytes]]:
        with self.lock:
            return list(self.accepted.values())


def notifier_env(smtp: SmtpServer, **extra: str) -> dict[str, str]:
    return {"RAPPORT_CLOCK": "simulated", "RAPPORT_SMTP_HOST": "127.0.0.1", "RAPPORT_SMTP_PORT": str(smtp.port),
            "RAPPORT_WEBHOOK_ALLOW_HTTP": "true", "RAPPORT_WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8",  # the loopback sinks
            "RAPPORT_SENDER_POLL_INTERVAL_S": "0.2",
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


async def publish_intake(bootstrap: str, episode_id: uuid.UUID, person_id: str, clinician_id: str, at: datetime,
                         org: str | None = "org-test") -> str:
    """Tell the notifier the episode's organisation (``org``, the tests' ``TEST_ORG`` by default),
    which scopes who may read its deliveries, which partners' webhooks carry its events and whose
    on-call is paged. It is sent as ``rapport.intake.declined.v1`` carrying ``organisation_id``: the
    notifier records the organisation from it and nothing else, while an ``intake.completed`` of
    made-up content would also reach the scheduler, which cannot plan it and dead-letters it (the
    tests publish the episode's course events themselves). ``clinician_id`` is kept for callers."""
    from rapport_shared.contracts import IntakeDeclinedV1  # noqa: PLC0415

    return await publish(bootstrap, IntakeDeclinedV1(
        episode_id=episode_id, person_id=person_id, reason_code="withdrawn", declined_at=at - timedelta(hours=1),
        organisation_id=org), source="/rapport/intake", at=at)


async def episode_org(dsn: str, episode_id: uuid.UUID) -> str | None:
    """The organisation the notifier recorded for an episode (None until it knows one)."""
    import asyncpg  # noqa: PLC0415

    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval("SELECT organisation_id FROM episodes WHERE episode_id = $1", episode_id)
    finally:
        await conn.close()


async def intake_known(bootstrap: str, dsn: str, episode_id: uuid.UUID, person_id: str, clinician_id: str,
                       at: datetime, org: str = "org-test") -> None:
    """Publish the episode's intake and wait until the notifier has recorded its organisation."""
    await publish_intake(bootstrap, episode_id, person_id, clinician_id, at, org)

    async def known() -> bool:
        return await episode_org(dsn, episode_id) == org
    await until(known, what=f"the notifier knowing episode {episode_id}'s organisation")


def api(url: str, token: str, method: str, path: str, **kw) -> httpx.Response:
    return httpx.request(method, f"{url}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=30, **kw)


def new_id() -> uuid.UUID:
    return uuid.uuid4()
