"""Pure notifier rules: idempotency keys, who is reached on which channel, webhook signatures and
bodies, templates. No I/O but reading template files. Quiet hours and working hours are
``rapport_shared.hours``."""

from __future__ import annotations

import base64
import hmac
import ipaddress
import json
import os
import re
import socket
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo
from functools import lru_cache
from pathlib import Path
from string import Template
from urllib.parse import unquote, urlsplit

from standardwebhooks import Webhook

from rapport_shared.envelope import CloudEvent, format_time

NAMESPACE = uuid.UUID("6f1d3c1e-5b0e-4a57-9a53-6a0d6c1f0b8e")

# Notification kinds (one template file per kind and language: templates/<kind>.<lang>.txt).
SESSION_REMINDER = "session_reminder"
QUESTIONNAIRE_REQUEST = "questionnaire_request"
QUESTIONNAIRE_REMINDER = "questionnaire_reminder"
SAFETY_ALERT = "safety_alert"
SAFETY_ESCALATION = "safety_escalation"
REVIEW_NOTICE = "review_notice"
PHASE_CHANGE = "phase_change"
COURSE_SUMMARY = "course_summary"
COURSE_PLANNED = "course_planned"
PARTNER_EVENT = "partner_event"  # webhooks: the event itself is the body, no template
REFERRER_SUMMARY = "referrer_summary"  # webhooks: the end-of-course summary for the referrer (domain/referrer.py)

URGENT = {SAFETY_ALERT, SAFETY_ESCALATION}  # ignore quiet hours
PATIENT_KINDS = {SESSION_REMINDER, QUESTIONNAIRE_REQUEST, QUESTIONNAIRE_REMINDER}
TEMPLATED_KINDS = (SESSION_REMINDER, QUESTIONNAIRE_REQUEST, QUESTIONNAIRE_REMINDER, SAFETY_ALERT,
                   SAFETY_ESCALATION, REVIEW_NOTICE, PHASE_CHANGE, COURSE_SUMMARY, COURSE_PLANNED)


def idem_key(cause_event_id: str | uuid.UUID, recipient_ref: str, channel: str, kind: str, about: str | None = None) -> str:
    """The delivery's idempotency key: (cause event, recipient, channel) + the kind, because one
    event can cause several kinds for one recipient (a session → reminder and questionnaire), +
    what it is about when one event covers several things (``course.planned`` → one reminder per session)."""
    return f"{cause_event_id}/{recipient_ref}/{channel}/{kind}" + (f"/{about}" if about else "")


def notification_id(key: str) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, key)


# ---------------------------------------------------------------- recipients
def patient_channels(patient: dict | None) -> list[str]:
    """The one channel a patient is reached on: one with an address and explicit consent, the
    preferred one first (none: nobody reachable)."""
    if patient is None:
        return []
    consent = patient.get("channel_consent") or {}
    usable = [c for c, addr in (("email", patient.get("email")), ("sms", patient.get("phone")))
              if addr and consent.get(c) is True]
    if patient.get("preferred_channel") in usable:
        usable.remove(patient["preferred_channel"])
        usable.insert(0, patient["preferred_channel"])
    return usable[:1]


def local_time(t: datetime, tz: tzinfo | None) -> tuple[str, str]:
    """(``t`` as the recipient reads it, the zone's name): UTC when no zone is known."""
    if tz is None:
        return t.strftime("%Y-%m-%d %H:%M UTC"), "UTC"
    return t.astimezone(tz).strftime("%Y-%m-%d %H:%M"), str(tz)


# ---------------------------------------------------------------- webhooks (Standard Webhooks)
def structured(event: CloudEvent) -> str:
    """The body POSTed to partners: the CloudEvent in structured JSON mode (same for every retry)."""
    return json.dumps({"specversion": "1.0", "id": event.id, "source": event.source, "type": event.type,
                       "subject": event.subject, "time": format_time(event.time), "dataschema": event.dataschema,
                       "datacontenttype": "application/json", "data": event.data}, separators=(",", ":"), sort_keys=True)


def pushed_to_partners(event: CloudEvent) -> bool:
    """Every event but the record of a webhook delivery (no feedback loop)."""
    return not (event.type.startswith("rapport.notification.") and event.data.get("channel") == "webhook")


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,`` + base64(HMAC-SHA256(base64-decoded secret after ``whsec_``, f"{id}.{ts}.{body}")),
    computed by the Standard Webhooks reference library (what receivers verify with)."""
    return Webhook(secret).sign(msg_id, datetime.fromtimestamp(timestamp, tz=timezone.utc), body.decode("utf-8"))


def verify(secret: str, headers: dict[str, str], body: bytes, *, now: int | None = None, tolerance_s: int = 300) -> bool:
    """The receiver's check (the recipe in docs/notifier.md)."""
    h = {k.lower(): v for k, v in headers.items()}
    msg_id, ts = h["webhook-id"], int(h["webhook-timestamp"])
    if now is not None and abs(now - ts) > tolerance_s:
        return False
    expected = sign(secret, msg_id, ts, body).split(",", 1)[1]
    return any(hmac.compare_digest(expected, s.split(",", 1)[1])
               for s in h["webhook-signature"].split() if s.startswith("v1,"))


class WebhookUrlError(ValueError):
    pass


class WebhookAddressError(WebhookUrlError):
    """The URL's host is an address (or ``localhost``) a webhook may not reach; ``reason`` says why."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_CGNAT = ipaddress.ip_network("100.64.0.0/10")            # RFC 6598 shared address space
_NAT64 = ipaddress.ip_network("64:ff9b::/96")             # RFC 6052 well-known prefix (embeds IPv4)
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")     # RFC 8215 local-use NAT64
_V4_COMPAT = ipaddress.ip_network("::/96")                # deprecated IPv4-compatible IPv6
_SITE_LOCAL = ipaddress.ip_network("fec0::/10")
# BSD inet_aton forms (what getaddrinfo accepts as an IPv4 literal): 1 to 4 parts, each decimal,
# octal (leading 0) or hex (0x): 2130706433, 0177.0.0.1, 0x7f.1, 127.1, 0x7f000001 ...
_LEGACY_V4 = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}$", re.IGNORECASE)


def parse_networks(raw: str) -> tuple[Network, ...]:
    """``RAPPORT_WEBHOOK_ALLOW_NETWORKS``: comma-separated CIDRs (``10.20.0.0/16,fd00:1::/48``)."""
    out = []
    for part in raw.split(","):
        if part.strip():
            try:
                out.append(ipaddress.ip_network(part.strip(), strict=True))
            except ValueError as exc:
                raise ValueError(f"not a network (CIDR, host bits zero): {part.strip()!r}: {exc}") from None
    return tuple(out)


def literal_address(host: str) -> Address | None:
    """The IP address a URL host denotes if it is an address literal in ANY textual form (dotted,
    decimal ``2130706433``, octal, hex, short ``127.1``, IPv6 with or without a zone id, full-width
    digits), else None (a host name, resolved when sending). Raises WebhookUrlError for something
    numeric that is no valid address."""
    h = unicodedata.normalize("NFKC", unquote(host)).strip().lower().removeprefix("[").removesuffix("]")
    h = h[:-1] if h.endswith(".") else h
    try:
        return ipaddress.ip_address(h)
    except ValueError:
        pass
    if ":" in h:
        raise WebhookUrlError("not a valid IPv6 address")
    if _LEGACY_V4.match(h) or re.search(r"\.(0x[0-9a-f]*|[0-9]+)$", h):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(h))
        except OSError:
            raise WebhookUrlError("not a valid IPv4 address") from None
    return None


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (and a packet to it may reach): mapped
    (::ffff:a.b.c.d), 6to4 (2002::/16), Teredo client, NAT64 (64:ff9b::/96), IPv4-compatible."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64 or ip in _V4_COMPAT and int(ip) > 1:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_refusal(ip: Address | str, allow: tuple[Network, ...] = ()) -> str | None:
    """Why a webhook must not connect to ``ip`` (None: it may): loopback, private (RFC 1918,
    RFC 4193), link-local (incl. the 169.254.169.254 metadata address), multicast, unspecified,
    reserved, shared/CGNAT (100.64/10), site-local, documentation and other non-global space, and
    an IPv6 address embedding any of those (mapped, 6to4, Teredo, NAT64). ``allow``
    (``RAPPORT_WEBHOOK_ALLOW_NETWORKS``) admits partners on a private network; multicast and
    unspecified addresses are refused even then. The one check, used at subscription (literal
    hosts) and at send time (every resolved address)."""
    if isinstance(ip, str):
        ip = ipaddress.ip_address(ip)
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            ip = ipaddress.IPv6Address(str(ip).split("%", 1)[0])
        if ip.ipv4_mapped is not None:  # the socket connects to the IPv4 address itself
            ip = ip.ipv4_mapped
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_multicast:
        return "multicast"
    if any(ip.version == net.version and ip in net for net in allow):
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_v4(ip)
        if inner is not None and (why := address_refusal(inner, allow)) is not None:
            return f"{why} (embedded in IPv6)"
        if ip in _NAT64_LOCAL or ip in _SITE_LOCAL:
            return "private"
        if ip in _NAT64:  # a public IPv4 address through a NAT64 gateway (DNS64 networks)
            return None
    checks = (("loopback", ip.is_loopback), ("link-local", ip.is_link_local),
              ("shared (CGNAT)", ip.version == 4 and ip in _CGNAT), ("reserved", ip.is_reserved),
              ("private", ip.is_private), ("not globally routable", not ip.is_global))
    return next((why for why, hit in checks if hit), None)


def check_webhook_url(url: str, *, allow_http: bool, allow_networks: tuple[Network, ...] = ()) -> str:
    """At subscription: https (http only with ``allow_http``, tests), a host and no credentials,
    no ``localhost`` name, and a literal address (any textual form) only if ``address_refusal``
    admits it. Host names are resolved and checked again at every send (adapters/channels.py)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise WebhookUrlError("not a URL") from None
    if parts.scheme not in (("https", "http") if allow_http else ("https",)):
        raise WebhookUrlError("must be an https:// URL")
    if not parts.hostname or parts.username is not None or parts.password is not None:
        raise WebhookUrlError("must have a host and no credentials")
    if port == 0:
        raise WebhookUrlError("must not use port 0")
    host = unicodedata.normalize("NFKC", unquote(parts.hostname)).lower().rstrip(".")
    ip = literal_address(parts.hostname)
    if ip is None:
        if host == "localhost" or host.endswith(".localhost"):
            raise WebhookAddressError("must not point at localhost", "localhost")
        return url
    why = address_refusal(ip, allow_networks)
    if why is not None:
        raise WebhookAddressError(f"must not point at this address ({why})", why)
    return url


# ---------------------------------------------------------------- templates
class TemplateMissing(LookupError):
    pass


@dataclass(frozen=True)
class Rendered:
    subject: str
    body: str


class Templates:
    """``<dir>/<kind>.<lang>.txt``: first line ``Subject: ...``, then a blank line, then the body;
    ``${name}`` placeholders filled from the notification's params."""

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)

    def languages(self) -> set[str]:
        langs: dict[str, set[str]] = {}
        for p in self.dir.glob("*.txt"):
            kind, _, lang = p.stem.rpartition(".")
            langs.setdefault(lang, set()).add(kind)
        return {lang for lang, kinds in langs.items() if set(TEMPLATED_KINDS) <= kinds}

    def has(self, kind: str, lang: str) -> bool:
        return (self.dir / f"{kind}.{lang}.txt").is_file()

    def render(self, kind: str, lang: str, params: dict) -> Rendered:
        path = self.dir / f"{kind}.{lang}.txt"
        if not path.is_file():
            raise TemplateMissing(f"no template {path.name}")
        text = path.read_text(encoding="utf-8")
        head, _, body = text.partition("\n\n")
        subject = head.removeprefix("Subject:").strip()
        values = {k: str(v) for k, v in params.items()}
        return Rendered(Template(subject).safe_substitute(values), Template(body).safe_substitute(values).strip() + "\n")


@lru_cache(maxsize=8)
def complete_languages(directory: str) -> frozenset[str]:
    """The languages of ``directory`` with a complete template set (read once per directory)."""
    return frozenset(Templates(directory).languages())
