"""Pure notifier rules: idempotency keys, quiet hours, webhook signatures, templates. No I/O but
reading template files."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import os
import re
import socket
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from pathlib import Path
from string import Template
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

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


# ---------------------------------------------------------------- quiet hours
_HHMM = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")


class QuietHoursError(ValueError):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason


@dataclass(frozen=True)
class QuietHours:
    start: time
    end: time
    tz: ZoneInfo

    @classmethod
    def parse(cls, raw: dict | None) -> "QuietHours | None":
        if raw is None:
            return None
        if not isinstance(raw, dict):
            raise QuietHoursError("quiet_hours", "must be an object {start, end, timezone}")
        parts = {}
        for f in ("start", "end"):
            m = _HHMM.match(str(raw.get(f, "")))
            if not m:
                raise QuietHoursError(f"quiet_hours.{f}", "must be HH:MM (24 h)")
            parts[f] = time(int(m.group(1)), int(m.group(2)))
        try:
            tz = ZoneInfo(str(raw.get("timezone", "")))
        except (ZoneInfoNotFoundError, ValueError):
            raise QuietHoursError("quiet_hours.timezone", "must be an IANA time zone, e.g. Europe/London") from None
        if parts["start"] == parts["end"]:
            raise QuietHoursError("quiet_hours", "start and end must differ")
        return cls(parts["start"], parts["end"], tz)

    def _quiet(self, t: time) -> bool:
        if self.start < self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end  # wraps midnight

    def next_allowed(self, at: datetime) -> datetime:
        """``at`` if it is outside the quiet hours, else the end of the quiet period."""
        local = at.astimezone(self.tz)
        if not self._quiet(local.time()):
            return at
        end = local.replace(hour=self.end.hour, minute=self.end.minute, second=0, microsecond=0)
        if end <= local:
            end += timedelta(days=1)
        return end.astimezone(at.tzinfo)


# ---------------------------------------------------------------- clinicians' working hours
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index = datetime.weekday()
_HHMM_END = re.compile(r"^(?:([01][0-9]|2[0-3]):([0-5][0-9])|(24):(00))$")


class WorkingHoursError(ValueError):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason


def _minutes(raw: object, field: str, *, end: bool) -> int:
    m = (_HHMM_END if end else _HHMM).match(raw) if isinstance(raw, str) else None
    if not m:
        raise WorkingHoursError(field, "must be HH:MM (24 h)" + (", or 24:00" if end else ""))
    h, mm = (m.group(1), m.group(2)) if m.group(1) is not None else (m.group(3), m.group(4))
    return int(h) * 60 + int(mm)


@dataclass(frozen=True)
class WorkingHours:
    """Weekly working hours in a time zone: ``{"timezone": "Europe/London", "slots": [{"day": "mon",
    "start": "09:00", "end": "17:00"}, ...]}``. A slot lies within one day (``end`` after ``start``,
    ``24:00`` allowed); a night shift is two slots. Times are wall-clock times in the zone."""

    tz: ZoneInfo
    slots: tuple[tuple[int, int, int], ...]  # (weekday, start minute, end minute)

    @classmethod
    def parse(cls, raw: object) -> "WorkingHours | None":
        if raw is None:
            return None
        if not isinstance(raw, dict):
            raise WorkingHoursError("working_hours", "must be an object {timezone, slots}")
        extra = sorted(set(raw) - {"timezone", "slots"})
        if extra:
            raise WorkingHoursError(f"working_hours.{extra[0]}", "unknown field")
        tz_name = raw.get("timezone")
        try:
            if not isinstance(tz_name, str) or not tz_name:
                raise ValueError
            tz = ZoneInfo(tz_name)
        except (ZoneInfoNotFoundError, ValueError):
            raise WorkingHoursError("working_hours.timezone", "must be an IANA time zone, e.g. Europe/London") from None
        slots_raw = raw.get("slots")
        if not isinstance(slots_raw, list) or not slots_raw:
            raise WorkingHoursError("working_hours.slots", "must be a non-empty list of {day, start, end}")
        slots = []
        for i, slot in enumerate(slots_raw):
            at = f"working_hours.slots.{i}"
            if not isinstance(slot, dict):
                raise WorkingHoursError(at, "must be an object {day, start, end}")
            extra = sorted(set(slot) - {"day", "start", "end"})
            if extra:
                raise WorkingHoursError(f"{at}.{extra[0]}", "unknown field")
            if slot.get("day") not in DAYS:
                raise WorkingHoursError(f"{at}.day", f"must be one of {', '.join(DAYS)}")
            start = _minutes(slot.get("start"), f"{at}.start", end=False)
            end = _minutes(slot.get("end"), f"{at}.end", end=True)
            if end <= start:
                raise WorkingHoursError(f"{at}.end", "must be after start (a slot lies within one day)")
            slots.append((DAYS.index(slot["day"]), start, end))
        return cls(tz, tuple(slots))

    def within(self, at: datetime) -> bool:
        local = at.astimezone(self.tz)
        minute = local.hour * 60 + local.minute
        return any(day == local.weekday() and start <= minute < end for day, start, end in self.slots)


# ---------------------------------------------------------------- webhooks (Standard Webhooks)
def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,`` + base64(HMAC-SHA256(base64-decoded secret after ``whsec_``, f"{id}.{ts}.{body}"))."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


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
