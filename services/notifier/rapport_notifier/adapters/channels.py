"""Delivery channels: email (SMTP), SMS (one provider HTTP API adapter), signed webhooks, log.

Every send carries the delivery's idempotency key to the outside world: email as the
``Message-ID`` (derived from the notification id) and an ``X-Rapport-Idempotency-Key`` header,
SMS as the provider's ``Idempotency-Key`` header, webhooks as ``webhook-id``. A channel raises
``SendError`` (``retryable`` or not); anything else is treated as retryable.

A channel may also answer "did the provider accept this message?" (``has_status_lookup`` and
``was_accepted``): the sender asks before re-sending a delivery that is *in doubt* (the process
died mid-send). Only email has one (``EMAIL_STATUS_URL``); SMS relies on the provider
deduplicating by ``Idempotency-Key`` and webhooks on receivers deduplicating by ``webhook-id``.

Errors are CLASSIFIED here and carry no contact data: ``SendError.code`` is a class
(``recipient_refused``, ``mailbox_full``, ``timeout``, ``provider_rejected``, ``webhook_http_500``,
``webhook_refused_address`` ...) and ``detail`` at most a safe fragment (an SMTP reply code and
enhanced status, an HTTP status). An SMTP server's reply text quotes the address and an exception's
``str()`` may quote anything, so neither is ever kept: every channel exception is re-raised
``from None`` (no chained original in a traceback) and ``SendError`` drops a detail that does not
look like a code. That is what reaches ``notifications.last_error``, the logs, the delivery log and
``notification.failed.v1``.

Webhooks are pinned to checked addresses: the host is resolved when sending, EVERY address it
resolves to must pass ``rules.address_refusal`` (else ``webhook_refused_address``, nothing sent),
and the connection is opened to that checked address itself (an httpcore network backend that
resolves, checks and connects in one step), so there is no second DNS lookup an attacker's DNS
could answer differently. TLS still verifies the certificate against the URL's host name (SNI
and ``Host`` come from the URL). Redirects are never followed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from email.message import EmailMessage

import aiosmtplib
import httpcore
import httpx

from rapport_shared.logging import get_logger

from ..domain.rules import Network, WebhookAddressError, WebhookUrlError, address_refusal, check_webhook_url, sign

log = get_logger("rapport.notifier.channel")


_CODE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
# A safe detail: a word or a reply code ("smtp 452 4.2.2", "http 503", "loopback") - starts with a
# letter, no '@' or '+', no run of 6+ digits (a phone number), short.
_SAFE_DETAIL = re.compile(r"^[A-Za-z][A-Za-z0-9 ._()/-]{0,47}$")
_LONG_DIGITS = re.compile(r"[0-9]{6,}")


def safe_detail(detail: str) -> str:
    detail = (detail or "").strip()
    return detail if _SAFE_DETAIL.match(detail) and not _LONG_DIGITS.search(detail) else ""


class SendError(Exception):
    """A classified channel failure. ``code``: the class; ``detail``: a safe fragment, dropped
    unless it looks like one (``safe_detail``). ``maybe_delivered``: the attempt broke off where the
    provider may already have accepted the message (e.g. the connection dropped during the SMTP
    transaction), unlike a definite refusal. ``str()`` is what is stored and logged."""

    def __init__(self, code: str, detail: str = "", retryable: bool = True, maybe_delivered: bool = False) -> None:
        code = code if _CODE.match(code or "") else "unclassified"
        detail = safe_detail(detail)
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code, self.detail, self.retryable, self.maybe_delivered = code, detail, retryable, maybe_delivered

    @property
    def stored(self) -> str:
        """``last_error``: the class, and the safe detail if any."""
        return str(self)


# ---------------------------------------------------------------- classification
_ENHANCED = re.compile(rb"^\s*([245]\.[0-9]{1,3}\.[0-9]{1,3})\b")


def _enhanced(text: bytes | str | None) -> str:
    """The RFC 3463 enhanced status code at the start of an SMTP reply (``5.1.1``), else ''."""
    raw = text.encode("latin-1", "replace") if isinstance(text, str) else (text or b"")
    m = _ENHANCED.match(raw)
    return m.group(1).decode() if m else ""


def _smtp_detail(code: int, text) -> str:
    return " ".join(x for x in ("smtp", str(code), _enhanced(text)) if x)


def classify_recipient_refusal(code: int, text: bytes | str | None) -> SendError:
    """An SMTP server's answer to RCPT TO (its text quotes the address: only the codes are kept)."""
    enh = _enhanced(text)
    subject = enh.split(".")[1:2]
    if code in (452, 552) or enh[2:5] == "2.2":
        cls = "mailbox_full"
    elif enh.endswith(".1.1") or enh[2:4] == "1." or code in (551, 553):
        cls = "recipient_refused"          # no such user / bad address syntax / not local
    elif subject == ["7"]:
        cls = "rejected_by_policy"         # security/policy status (5.7.x): spam, relay, auth
    elif code in (450, 550) or enh[2:4] == "2.":
        cls = "mailbox_unavailable"
    else:
        cls = "recipient_deferred" if 400 <= code < 500 else "recipient_refused"
    return SendError(cls, _smtp_detail(code, text), retryable=400 <= code < 500)


# The steps of one SMTP attempt, in order. Before ``transaction`` (MAIL FROM onwards) nothing can
# have been accepted, so a connection that breaks off or times out there is a definite failure;
# from ``transaction`` on it may have been (the server's 250 to DATA lost on the way back).
SMTP_STEPS = ("connect", "tls", "auth", "transaction")


def classify_smtp(exc: BaseException, step: str = "transaction") -> SendError:
    """Any exception of an aiosmtplib attempt → a class; never its ``str()`` or the server's reply
    text (they quote addresses). ``step``: where the attempt was (``SMTP_STEPS``; unknown = as late
    as possible, so a break-off counts as ``maybe_delivered``)."""
    maybe = step not in ("connect", "tls", "auth")
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        first = next(iter(exc.recipients), None)
        return classify_recipient_refusal(first.code, first.message) if first else SendError("recipient_refused")
    if isinstance(exc, aiosmtplib.SMTPRecipientRefused):
        return classify_recipient_refusal(exc.code, exc.message)
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):  # 535 bad credentials; 454 temporary
        return SendError("auth_failed", _smtp_detail(exc.code, exc.message), retryable=400 <= exc.code < 500)
    if isinstance(exc, aiosmtplib.SMTPSenderRefused):
        return SendError("sender_refused", _smtp_detail(exc.code, exc.message), retryable=exc.code < 500)
    if isinstance(exc, aiosmtplib.SMTPDataError):
        return SendError("message_refused" if exc.code >= 500 else "message_deferred",
                         _smtp_detail(exc.code, exc.message), retryable=exc.code < 500)
    if isinstance(exc, aiosmtplib.SMTPConnectResponseError):  # the greeting was not 220 (421 busy, 554 no service)
        return SendError("server_unavailable", _smtp_detail(exc.code, exc.message), retryable=exc.code != 554)
    if isinstance(exc, aiosmtplib.SMTPHeloError):
        return SendError("protocol_error", _smtp_detail(exc.code, exc.message))
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        code = exc.code
        if step == "tls":    # STARTTLS answered with something else than 220
            return SendError("tls_failed", _smtp_detail(code, exc.message))
        if step == "auth":
            return SendError("auth_failed", _smtp_detail(code, exc.message), retryable=400 <= code < 500)
        return SendError("smtp_error", _smtp_detail(code, exc.message),
                         retryable=400 <= code < 500 or code >= 500 and code not in (550, 551, 553))
    if _is_tls(exc) and not maybe:  # a certificate that does not verify, a failed handshake (implicit TLS or STARTTLS)
        return SendError("tls_failed", _tls_name(exc))
    if isinstance(exc, (aiosmtplib.SMTPTimeoutError, TimeoutError, asyncio.TimeoutError)):
        return SendError("timeout", maybe_delivered=maybe)  # (SMTPConnectTimeoutError: at connect, nothing sent)
    if isinstance(exc, aiosmtplib.SMTPConnectError):  # could not connect (or lost before the greeting)
        cause = exc.__cause__
        if isinstance(cause, socket.gaierror):
            return SendError("server_unresolvable")
        return SendError("connection_failed", "refused" if isinstance(cause, ConnectionRefusedError) else "")
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected):
        if step == "tls":  # reset while upgrading: the server refused our handshake
            return SendError("tls_failed", "disconnected")
        return SendError("connection_lost", maybe_delivered=maybe)
    if isinstance(exc, aiosmtplib.SMTPNotSupported):  # e.g. a non-ASCII address without SMTPUTF8
        return SendError("protocol_error", "not supported", retryable=False)
    if isinstance(exc, aiosmtplib.SMTPException):
        # Raised by the client itself: the server does not offer STARTTLS (tls) or AUTH (auth).
        if step == "tls":
            return SendError("tls_failed", "starttls not offered")
        if step == "auth":
            return SendError("auth_failed", "auth not offered", retryable=False)
        return SendError("protocol_error", type(exc).__name__, maybe_delivered=maybe)
    if isinstance(exc, socket.gaierror):
        return SendError("server_unresolvable")
    if isinstance(exc, ConnectionRefusedError):
        return SendError("connection_failed", "refused")
    if isinstance(exc, OSError):
        return SendError("connection_lost", type(exc).__name__, maybe_delivered=maybe)
    return SendError("protocol_error", type(exc).__name__, maybe_delivered=maybe)


def _tls_name(exc: BaseException) -> str:
    """The ssl exception's type (``SSLCertVerificationError``), found along the chain."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (ssl.SSLError, ssl.CertificateError)):
            return type(exc).__name__
        exc = exc.__cause__ or exc.__context__
    return ""


def _is_tls(exc: BaseException) -> bool:
    return bool(_tls_name(exc))


def classify_http(exc: httpx.HTTPError) -> SendError:
    """A transport failure of an HTTP channel (never ``repr(exc)``: it may quote a URL or a body)."""
    if isinstance(exc, httpx.TimeoutException):
        return SendError("timeout", maybe_delivered=True)
    if isinstance(exc, httpx.ConnectError):
        return SendError("tls_failed" if _is_tls(exc) else "connection_failed")
    return SendError("connection_lost", type(exc).__name__, maybe_delivered=True)


@dataclass
class Outgoing:
    notification_id: str
    idem_key: str
    address: str               # email address, E.164 number, webhook URL, or recipient ref (log)
    subject: str = ""
    body: str = ""
    secret: str = ""           # webhooks
    headers: dict[str, str] = field(default_factory=dict)


class LogChannel:
    name = "log"

    async def send(self, msg: Outgoing) -> None:
        log.info("notification sent", channel=self.name, notification_id=msg.notification_id,
                 recipient_ref=msg.address, subject=msg.subject)


class EmailChannel:
    """SMTP with aiosmtplib, one connection per message: connect (``tls="implicit"``: TLS from the
    first byte, SMTPS), ``STARTTLS`` (``tls="starttls"``: required, never a fall-back to plain), AUTH
    when a username is set (the settings refuse AUTH without TLS but to loopback), then the
    transaction, then ``QUIT``. TLS verifies the relay's certificate for ``host`` against
    ``ca_file`` (a private relay CA) or the system trust store. ``timeout_s`` bounds each step
    (connect, each reply); the sender's ``SEND_TIMEOUT_S`` bounds the whole attempt and cancels it
    (the connection is closed: no abandoned worker finishes the send later)."""

    name = "email"
    TLS_MODES = ("none", "starttls", "implicit")

    def __init__(self, host: str, port: int | None, sender: str, timeout_s: float, status_url: str = "",
                 status_token: str = "", *, tls: str = "none", username: str = "", password: str = "",
                 ca_file: str = "") -> None:
        if tls not in self.TLS_MODES:
            raise ValueError(f"tls must be one of {self.TLS_MODES}")
        self.host, self.sender, self.timeout_s = host, sender, timeout_s
        self.port = port or {"none": 25, "starttls": 587, "implicit": 465}[tls]
        self.status_url, self.status_token = status_url, status_token
        self.tls, self.username, self._password = tls, username, password
        # Built once (a CA file that does not load fails at start-up, not at the first safety page).
        self.tls_context = self.make_tls_context(ca_file) if tls != "none" else None

    @staticmethod
    def make_tls_context(ca_file: str = "") -> ssl.SSLContext:
        """Certificate and host name verified; TLS 1.2 or later; ``ca_file`` replaces the system
        trust store (a private relay CA)."""
        ctx = ssl.create_default_context(cafile=ca_file or None)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        return ctx

    def __repr__(self) -> str:  # never the password
        return f"EmailChannel(host={self.host!r}, port={self.port}, tls={self.tls!r}, auth={bool(self.username)})"

    @staticmethod
    def message_id(notification_id: str) -> str:
        return f"<{notification_id}@rapport.notifier>"

    @property
    def has_status_lookup(self) -> bool:
        return bool(self.status_url)

    async def was_accepted(self, notification_id: str) -> bool:
        """Ask the provider whether it accepted the message with this delivery's Message-ID.

        Contract (docs/notifier.md): ``GET {EMAIL_STATUS_URL}?message_id=<Message-ID, with its
        angle brackets>``, ``Authorization: Bearer <EMAIL_STATUS_TOKEN>`` when a token is set →
        ``200 {"accepted": true|false}``. Anything else (unreachable, timeout, another status, a
        body without a boolean ``accepted``) is a retryable ``SendError``: we do not know."""
        headers = {"Authorization": f"Bearer {self.status_token}"} if self.status_token else {}
        try:
            async with httpx.AsyncClient(timeout=self.timeout_s) as client:
                r = await client.get(self.status_url, params={"message_id": self.message_id(notification_id)},
                                     headers=headers)
        except httpx.HTTPError as exc:
            raise SendError("status_lookup_unreachable", classify_http(exc).code) from None
        if r.status_code != 200:
            raise SendError("status_lookup_failed", f"http {r.status_code}")
        try:
            accepted = r.json()["accepted"]
        except (ValueError, KeyError, TypeError):
            accepted = None
        if not isinstance(accepted, bool):
            raise SendError("status_lookup_failed", "answer without a boolean 'accepted'")
        return accepted

    def build(self, msg: Outgoing) -> EmailMessage:
        m = EmailMessage()
        m["From"] = self.sender
        m["To"] = msg.address
        m["Subject"] = msg.subject
        m["Message-ID"] = self.message_id(msg.notification_id)
        m["X-Rapport-Idempotency-Key"] = msg.idem_key
        m["X-Rapport-Notification-Id"] = msg.notification_id
        m.set_content(msg.body)
        return m

    async def send(self, msg: Outgoing) -> None:
        if not self.host:
            raise SendError("channel_unconfigured", "no SMTP host", retryable=False)
        m = self.build(msg)
        smtp = aiosmtplib.SMTP(hostname=self.host, port=self.port, timeout=self.timeout_s,
                               use_tls=self.tls == "implicit", start_tls=False, tls_context=self.tls_context)
        step, accepted, err = "connect", False, None
        try:
            await smtp.connect()                  # (implicit TLS: the handshake is part of it)
            if self.tls == "starttls":
                step = "tls"
                await smtp.starttls()
            if self.username:
                step = "auth"
                await smtp.login(self.username, self._password)
            step = "transaction"
            await smtp.send_message(m, sender=self.sender, recipients=[msg.address])
            accepted = True
        except Exception as exc:  # noqa: BLE001  classified, the original (quoting the address) dropped
            err = classify_smtp(exc, step)
        finally:  # (also when the sender's timeout cancels us: the connection is closed, nothing goes on)
            await _smtp_close(smtp, polite=accepted)
        if err is not None:
            raise err from None


async def _smtp_close(smtp: "aiosmtplib.SMTP", polite: bool) -> None:
    """After an accepted message: ``QUIT``, briefly (the message is the server's already; a slow or
    failed QUIT changes nothing). Otherwise (or if that fails) the connection is just closed."""
    if polite and smtp.is_connected:
        try:
            await smtp.quit(timeout=1.0)
        except Exception:  # noqa: BLE001
            pass
    if smtp.is_connected:
        smtp.close()


class SmsChannel:
    """The one SMS provider adapter: ``POST {base}/messages`` JSON ``{to, body, reference}``,
    ``Authorization: Bearer <token>``, ``Idempotency-Key: <key>``; 2xx = accepted. No status
    lookup: an in-doubt SMS is sent again with the same ``Idempotency-Key``, and the provider is
    relied on to deduplicate by it (exactly once only where it does)."""

    name = "sms"

    def __init__(self, base_url: str, token: str, timeout_s: float) -> None:
        self.base_url, self.token, self.timeout_s = base_url.rstrip("/"), token, timeout_s

    async def send(self, msg: Outgoing) -> None:
        if not self.base_url:
            raise SendError("channel_unconfigured", "no SMS provider", retryable=False)
        try:
            async with httpx.AsyncClient(timeout=self.timeout_s) as client:
                r = await client.post(f"{self.base_url}/messages",
                                      json={"to": msg.address, "body": msg.body, "reference": msg.notification_id},
                                      headers={"Authorization": f"Bearer {self.token}", "Idempotency-Key": msg.idem_key})
        except httpx.HTTPError as exc:
            err = classify_http(exc)  # the provider's URL and our request (the number) stay out of it
        else:
            if r.status_code < 300:
                return
            err = classify_sms_status(r.status_code)  # never the provider's body (it may quote the number)
        raise err from None


def classify_sms_status(status: int) -> SendError:
    detail = f"http {status}"
    if status in (401, 403):
        return SendError("auth_failed", detail, retryable=False)
    if status == 429:
        return SendError("provider_rate_limited", detail)
    if status >= 500:
        return SendError("provider_unavailable", detail)
    return SendError("provider_rejected", detail, retryable=False)


Resolver = Callable[[str, int], Awaitable[list[str]]]


async def system_resolver(host: str, port: int) -> list[str]:
    """The host's addresses, as the operating system resolves them (numeric forms included:
    ``2130706433`` resolves to 127.0.0.1 here, and is refused by the check)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [info[4][0] for info in infos]


def _reason(why: str) -> str:
    """``loopback``, ``link_local``, ``shared_cgnat``, ``private_embedded_in_ipv6`` ..."""
    return re.sub(r"[^a-z0-9]+", "_", why.lower()).strip("_")


class WebhookAddressRefused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class WebhookUnresolvable(Exception):
    pass


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """httpcore network backend: resolve the host ONCE, refuse it unless every address passes
    ``address_refusal``, then connect to one of those checked addresses (by IP: no second lookup).
    httpcore still starts TLS with ``server_hostname`` = the URL's host, so the certificate is
    verified against the name, and httpx sends ``Host`` from the URL."""

    def __init__(self, resolver: Resolver, allow: tuple[Network, ...], inner: httpcore.AsyncNetworkBackend | None = None):
        self.resolver, self.allow = resolver, allow
        self.inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                          socket_options: Iterable | None = None) -> httpcore.AsyncNetworkStream:
        try:
            found = await self.resolver(host, port)
        except OSError:
            raise WebhookUnresolvable() from None
        addresses = list(dict.fromkeys(ipaddress.ip_address(a) for a in found))
        if not addresses:
            raise WebhookUnresolvable()
        for ip in addresses:  # one bad address refuses the name (no DNS-rebinding pick-and-mix)
            why = address_refusal(ip, self.allow)
            if why is not None:
                raise WebhookAddressRefused(why)
        last: Exception | None = None
        for ip in addresses:
            try:
                return await self.inner.connect_tcp(str(ip), port, timeout=timeout, local_address=local_address,
                                                    socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable | None = None) -> httpcore.AsyncNetworkStream:
        raise WebhookAddressRefused("unix socket")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


def pinned_transport(resolver: Resolver, allow: tuple[Network, ...]) -> httpx.AsyncHTTPTransport:
    """An httpx transport whose every connection goes through ``PinnedBackend``; no proxy from
    the environment (a proxy would make the check about the proxy, not the partner)."""
    transport = httpx.AsyncHTTPTransport(trust_env=False, retries=0)
    pool = transport._pool  # httpx builds its httpcore pool itself; give it the pinned backend
    transport._pool = httpcore.AsyncConnectionPool(ssl_context=pool._ssl_context, max_connections=1,
                                                   network_backend=PinnedBackend(resolver, allow))
    return transport


class WebhookChannel:
    """Standard Webhooks: ``webhook-id`` (the notification id, the same on every retry),
    ``webhook-timestamp`` (this attempt, unix seconds), ``webhook-signature`` (``v1,<base64 HMAC>``).

    Sent only to a checked address (module docstring): ``webhook_refused_address`` (for good) when
    the URL or any address its host resolves to is loopback, private, link-local, ... and not in
    ``allow_networks``; redirects are not followed (``webhook_redirect_not_followed``)."""

    name = "webhook"

    def __init__(self, timeout_s: float, *, allow_http: bool = False, allow_networks: tuple[Network, ...] = (),
                 resolver: Resolver | None = None) -> None:
        self.timeout_s, self.allow_http, self.allow_networks = timeout_s, allow_http, allow_networks
        self.resolver = resolver or system_resolver

    async def send(self, msg: Outgoing) -> None:
        try:  # the subscription-time check again (a row from before it, or settings since changed)
            check_webhook_url(msg.address, allow_http=self.allow_http, allow_networks=self.allow_networks)
        except WebhookAddressError as exc:
            raise SendError("webhook_refused_address", _reason(exc.reason), retryable=False) from None
        except WebhookUrlError:
            raise SendError("webhook_refused_url", retryable=False) from None
        body = msg.body.encode()
        ts = int(time.time())
        headers = {"content-type": "application/json", "webhook-id": msg.notification_id,
                   "webhook-timestamp": str(ts), "webhook-signature": sign(msg.secret, msg.notification_id, ts, body)}
        err: SendError
        try:
            async with httpx.AsyncClient(timeout=self.timeout_s, follow_redirects=False, trust_env=False,
                                         transport=pinned_transport(self.resolver, self.allow_networks)) as client:
                r = await client.post(msg.address, content=body, headers=headers)
        except WebhookAddressRefused as exc:
            log.warning("webhook refused: its host resolves to an address it may not reach",
                        notification_id=msg.notification_id, reason=exc.reason)
            err = SendError("webhook_refused_address", _reason(exc.reason), retryable=False)
        except WebhookUnresolvable:
            err = SendError("webhook_unresolvable")
        except httpx.HTTPError as exc:
            err = classify_http(exc)
        else:
            if 200 <= r.status_code < 300:
                return
            if 300 <= r.status_code < 400:
                err = SendError("webhook_redirect_not_followed", f"http {r.status_code}")
            else:
                err = SendError(f"webhook_http_{r.status_code}")
        raise err from None
