"""Pure notifier rules: idempotency keys, quiet hours, webhook signatures, templates. No I/O but
reading template files."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import os
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from pathlib import Path
from string import Template
from urllib.parse import urlsplit
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


def check_webhook_url(url: str, *, allow_http: bool) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        raise WebhookUrlError("not a URL") from None
    if parts.scheme not in (("https", "http") if allow_http else ("https",)):
        raise WebhookUrlError("must be an https:// URL")
    if not parts.hostname or parts.username or parts.password:
        raise WebhookUrlError("must have a host and no credentials")
    if not allow_http:
        if parts.hostname == "localhost":
            raise WebhookUrlError("must not point at localhost")
        try:
            ip = ipaddress.ip_address(parts.hostname)
        except ValueError:
            ip = None
        if ip is not None and (ip.is_private or ip.is_loopback or ip.is_link_local):
            raise WebhookUrlError("must not point at a private or loopback address")
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
