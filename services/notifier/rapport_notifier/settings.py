"""Notifier settings (env vars ``RAPPORT_*``). Lead times and windows are durations
(``rapport_shared.durations``): 90s, 15m, 24h, 2d, 1w, or ISO 8601 (PT24H)."""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from pathlib import Path
from typing import Literal

import re

from pydantic import SecretStr, field_validator, model_validator

from rapport_shared.durations import Duration
from rapport_shared.private_contacts import DEV_KEY_ID, DEV_KEYS_JSON, Keyring
from rapport_shared.programmes import ScheduleError, load_schedule
from rapport_shared.settings import ServiceSettings

from .domain.rules import parse_networks

TEMPLATES = Path(__file__).parent / "templates"
# The recipient of a safety page sent to RAPPORT_SAFETY_FALLBACK when it is an email address
# (reserved: no clinician may be paged on call under this id). A clinician id pages `oncall:<id>`.
FALLBACK_EMAIL_REF = "oncall:fallback"
_EMAIL = re.compile(r"^[^@\s:]+@[^@\s]+\.[^@\s]+$")
# Never a partner, even allow-listed in production: loopback, link-local (cloud metadata), "this network".
_NEVER = {4: [ipaddress.ip_network(n) for n in ("127.0.0.0/8", "169.254.0.0/16", "0.0.0.0/8")],
          6: [ipaddress.ip_network(n) for n in ("::1/128", "fe80::/10", "::/128", "::ffff:0:0/96")]}
_CLINICIAN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")


class NotifierSettings(ServiceSettings):
    service_name: str = "notifier"
    http_port: int = 8084

    timer_poll_interval_s: float = 1.0

    # What is sent, and when (in service-clock time, so simulated time drives them).
    session_reminder_lead: Duration = timedelta(hours=24)         # reminder this long before a session
    questionnaire_lead: Duration = timedelta(hours=48)            # questionnaire request this long before a session
    questionnaire_reminder_after: Duration = timedelta(hours=24)  # one reminder this long after the request, if unanswered
    questionnaire_expiry_lead: Duration = timedelta(0)            # the request expires this long before the session starts
    escalation_after: Duration = timedelta(minutes=15)            # unacknowledged safety alert → on-call clinician
    # Who is paged when a safety escalation (or an out-of-hours first page) finds nobody on call for
    # the alert's organisation: an email address, or the id of a clinician of this notifier's
    # clinicians table (paged on all their channels). Required in production; unset elsewhere, such
    # a page is recorded as a failed delivery (no_channel), never only logged. docs/notifier.md.
    safety_fallback: str = ""
    default_instruments: str = "phq9"           # when the episode's target condition is not known
    # A clinic's additions to the measurement schedule (domain.md §3.4; rapport_shared.programmes):
    # path of a YAML/JSON file with `add:`; additive only, refused at start-up if it tries to remove
    # anything (above all the PHQ-9 risk screen). Unset: the packaged schedule.
    measurement_overrides: str = ""
    default_language: str = "en"
    templates_dir: str = str(TEMPLATES)

    # Delivery (wall-clock: these are about the outside world, not the simulated course).
    replay_mode: bool = False                   # suppress every external send (replays, sandboxes)
    send_concurrency: int = 16
    send_timeout_s: float = 10.0
    retry_base_s: float = 1.0
    retry_max_s: float = 300.0
    retry_for_s: float = 24 * 3600.0            # give up (failed) after retrying this long
    sender_poll_interval_s: float = 1.0
    log_channel_fallback: bool = True           # clinicians with no contact channel: the log channel

    # Channels
    # Email: the SMTP relay (aiosmtplib). Empty host: no email channel (its deliveries fail
    # channel_unconfigured). docs/notifier.md, "Channels".
    smtp_host: str = ""
    smtp_port: int | None = None                # unset: 25, 587 with STARTTLS, 465 with implicit TLS
    smtp_from: str = "notifications@rapport.invalid"
    # none: plain SMTP (the loopback test server; production refuses it to any other host);
    # starttls: upgrade with STARTTLS, required (no fall-back to plain); implicit: TLS from the
    # first byte (SMTPS). The certificate is always verified, for SMTP_HOST's name.
    smtp_tls: Literal["none", "starttls", "implicit"] = "none"
    smtp_ca_file: str = ""                      # PEM CA(s) of a private relay; unset: the system trust store
    smtp_username: str = ""                     # AUTH (after TLS) when set
    smtp_password: SecretStr = SecretStr("")
    smtp_timeout_s: float | None = None         # per SMTP step (connect, each reply); unset: SEND_TIMEOUT_S
    # Optional: the mail provider's message status endpoint, asked before an in-doubt email is
    # sent again: GET {email_status_url}?message_id=<Message-ID> (Authorization: Bearer
    # <email_status_token> if set) → 200 {"accepted": true|false}. Unset: an in-doubt email is
    # resent with the same Message-ID (at least once). docs/notifier.md, "Exactly once".
    email_status_url: str = ""
    email_status_token: SecretStr = SecretStr("")
    sms_url: str = ""                           # provider base URL; POST {sms_url}/messages
    sms_token: SecretStr = SecretStr("")
    webhook_allow_http: bool = False            # tests only (production refuses it): allow http:// webhook URLs
    # Networks partner webhooks MAY reach although private (comma-separated CIDRs, e.g.
    # "10.20.0.0/16,fd00:20::/48"): a partner on a private network. Everything else that is not a
    # public address (loopback, RFC 1918/4193, link-local and metadata, CGNAT, ...) is refused,
    # checked on the addresses the host resolves to at send time (docs/notifier.md, "Webhooks").
    webhook_allow_networks: str = ""

    # The private contacts topic (rapport_shared.private_contacts)
    contacts_keys: SecretStr = SecretStr(DEV_KEYS_JSON)
    contacts_active_key: str = DEV_KEY_ID
    contacts_enabled: bool = True

    @field_validator("measurement_overrides")
    @classmethod
    def _measurement_overrides(cls, v: str) -> str:
        v = v.strip()
        if v:
            try:
                load_schedule(v)  # cached: the handlers use the same one
            except ScheduleError as exc:
                raise ValueError(f"RAPPORT_MEASUREMENT_OVERRIDES refused: {exc}") from None
        return v

    @field_validator("smtp_ca_file")
    @classmethod
    def _ca_file(cls, v: str) -> str:
        if v and not Path(v).is_file():
            raise ValueError("RAPPORT_SMTP_CA_FILE must name a readable PEM file")
        return v

    @model_validator(mode="after")
    def _smtp_auth(self) -> "NotifierSettings":
        if self.smtp_password.get_secret_value() and not self.smtp_username:
            raise ValueError("RAPPORT_SMTP_PASSWORD is set without RAPPORT_SMTP_USERNAME")
        if self.smtp_username and self.smtp_tls == "none" and self.smtp_host and not self.smtp_is_loopback():
            raise ValueError("RAPPORT_SMTP_USERNAME with RAPPORT_SMTP_TLS=none would send the password in clear: "
                             "set RAPPORT_SMTP_TLS=starttls or implicit")
        if self.smtp_timeout_s is not None and self.smtp_timeout_s <= 0:
            raise ValueError("RAPPORT_SMTP_TIMEOUT_S must be positive")
        return self

    @property
    def smtp_port_or_default(self) -> int:
        return self.smtp_port or {"none": 25, "starttls": 587, "implicit": 465}[self.smtp_tls]

    def smtp_is_loopback(self) -> bool:
        host = self.smtp_host.strip().strip("[]").lower()
        if host == "localhost" or host.endswith(".localhost"):
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    @field_validator("webhook_allow_networks")
    @classmethod
    def _networks(cls, v: str) -> str:
        parse_networks(v)
        return v

    def webhook_networks(self) -> tuple:
        return parse_networks(self.webhook_allow_networks)

    @field_validator("safety_fallback")
    @classmethod
    def _fallback(cls, v: str) -> str:
        v = v.strip()
        if v and not (_EMAIL.match(v) if "@" in v else _CLINICIAN_ID.match(v) and v != "fallback"):
            raise ValueError("RAPPORT_SAFETY_FALLBACK must be an email address or a clinician id")
        return v

    def safety_fallback_recipient(self) -> tuple[str, list[str] | None] | None:
        """(recipient ref, channels) of the safety fallback, or None when none is configured. An
        email address: ``oncall:fallback`` over email (the address is read when sending); a
        clinician id: ``oncall:<id>``, over that clinician's channels (None: looked up)."""
        if not self.safety_fallback:
            return None
        if "@" in self.safety_fallback:
            return FALLBACK_EMAIL_REF, ["email"]
        return f"oncall:{self.safety_fallback}", None

    def fallback_address(self, recipient_ref: str, channel: str) -> str | None:
        """The address of the email fallback, for its deliveries."""
        if recipient_ref == FALLBACK_EMAIL_REF and channel == "email" and "@" in self.safety_fallback:
            return self.safety_fallback
        return None

    def keyring(self) -> Keyring:
        return Keyring.from_config(self.contacts_keys.get_secret_value(), self.contacts_active_key)

    def production_refusals(self) -> list[str]:
        out = super().production_refusals()
        if self.webhook_allow_http:
            out.append("production refuses RAPPORT_WEBHOOK_ALLOW_HTTP: partner webhooks must be https to public hosts")
        for net in self.webhook_networks():
            if any(net.overlaps(never) for never in _NEVER[net.version]):
                out.append(f"production refuses {net} in RAPPORT_WEBHOOK_ALLOW_NETWORKS: loopback, link-local (cloud "
                           "metadata) and unspecified addresses are never a partner")
        if self.smtp_host and self.smtp_tls == "none" and not self.smtp_is_loopback():
            out.append("production refuses plain SMTP to a relay that is not on loopback (messages and any password "
                       "would cross the network in clear): set RAPPORT_SMTP_TLS=starttls or implicit")
        if not self.safety_fallback:
            out.append("production needs RAPPORT_SAFETY_FALLBACK (an email address or a clinician id): who is paged "
                       "when a safety alert finds nobody on call")
        if self.contacts_enabled and self.keyring().is_development():
            # With the intake's real key and this public one, every contact record would be
            # skipped as undecryptable and patients would get nothing.
            out.append("production refuses the development contacts key: set RAPPORT_CONTACTS_KEYS (the same keys "
                       "as intake's) and RAPPORT_CONTACTS_ACTIVE_KEY")
        return out

    @property
    def instruments(self) -> list[str]:
        return [i.strip() for i in self.default_instruments.split(",") if i.strip()]


def load() -> NotifierSettings:
    return NotifierSettings()
