"""Pseudonymous ids: the documented format, the check that refuses look-alikes, and how an
organisation derives one from its own identifier.

Format (docs/privacy.md, "Pseudonymous ids")::

    <prefix><separator><opaque characters>        e.g. P-k7qm2x4avd3fj6ta, clin-001, org-test

* an opaque **prefix** of letters saying what the id names (``P`` a person, ``clin`` a clinician,
  ``org`` an organisation — any letters the organisation likes);
* a **separator**, ``-`` or ``_``;
* opaque **characters**: random, or a keyed hash of the organisation's own identifier
  (``derive``), never the identifier itself.

Every id also matches the published JSON-Schema pattern ``PATTERN`` (letters, digits and
``. _ : -``, at most 64 characters). On top of it Rapport refuses, at its HTTP edge, an id that
**looks like** personal data (``problem``): a phone number, an e-mail address (or a
``first.last``/domain name), a date, a national id (US SSN ``123-45-6789``, UK NHS number of 10
digits, UK National Insurance number ``QQ123456C``) or a medical record number (``MRN:00012345``,
``MRN-00012345``, ``NHS-…``, or nothing but 7 or more digits after the prefix). The reasons never
repeat the value (they are logged and returned to callers).

Deriving one: ``P-`` + base32(HMAC-SHA256(org_secret, local_patient_number))[:16], lower case. The
same local number always gives the same id (so a referral for the same patient finds the same
person), nobody without the secret can go back from the id to the number, and base32's alphabet
is 26 letters and only six digits (2–7), so an id is as good as never all digits (16 digits in a
row: about 2 in 10¹²) and can never be mistaken for a number; ``derive`` checks its result anyway.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

# The published pattern (JSON Schema of every event and of the HTTP APIs): unchanged since v1, so
# partners' validators keep accepting every record already on the topics.
PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
_PATTERN = re.compile(PATTERN)

RULE = "an opaque code such as P-k7qm2x4avd3fj6ta (docs/privacy.md)"

# The reasons, as callers read them (HTTP 422 ``reason``); never the value itself.
PHONE = "looks like a phone number"
EMAIL = "looks like an email address"
NATIONAL = "looks like a national or medical record number"
PHONE_OR_NATIONAL = "looks like a phone number or a national or medical record number"
DATE = "looks like a date"
NAME = "looks like a name or free text (spaces)"
BAD_CHARACTERS = "is not a pseudonymous id (1 to 64 letters, digits and . _ : -, starting with a letter or digit)"

_DIGITS_ONLY = re.compile(r"^\+?[0-9\s().\-/]+$")  # digits with the separators people write them with
_DATE = re.compile(r"^(?:\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4})$")
_SSN = re.compile(r"^\d{3}[\s-]\d{2}[\s-]\d{4}$")
_NI_NUMBER = re.compile(r"^[A-Z]{2}\s?\d{2}\s?\d{2}\s?\d{2}\s?[A-D]$", re.IGNORECASE)
# A record-number scheme spelled out at the start, then a number: MRN:00012345, NHS-9434765919, CHI 0101...
_RECORD_PREFIX = re.compile(r"^(?:MRN|NHS|CHI|SSN|NINO|NHI|HCN|EMPI)[\s:#_.\-]*\d", re.IGNORECASE)
# A prefix of letters, an optional separator, then only digits (and separators): P-00012345.
_PREFIX_THEN_NUMBER = re.compile(r"^[A-Za-z]{1,16}[\s:#_.\-]?([0-9\s().\-/+]+)$")
# name.surname, a domain (example.org) or an e-mail's local part: dotted words ending in letters.
_DOTTED_NAME = re.compile(r"^[A-Za-z][\w-]*(?:\.[\w-]+)*\.[A-Za-z]{2,}$")

MIN_NUMBER_DIGITS = 7


def _digits(value: str) -> int:
    return sum(c.isdigit() for c in value)


def problem(value: str) -> str | None:
    """Why ``value`` is not acceptable as a pseudonymous id (a short reason that never repeats the
    value), or None when it is."""
    v = value.strip()
    if "@" in v:
        return EMAIL
    if _DATE.match(v):
        return DATE
    if _SSN.match(v) or _NI_NUMBER.match(v) or _RECORD_PREFIX.match(v):
        return NATIONAL
    if _DIGITS_ONLY.match(v) and _digits(v) >= MIN_NUMBER_DIGITS:
        if v.startswith(("+", "00", "(")) or any(c.isspace() or c in "()" for c in v):
            return PHONE
        return PHONE_OR_NATIONAL  # 943-476-5919: a US phone number and an NHS number alike
    m = _PREFIX_THEN_NUMBER.match(v)
    if m and _digits(m.group(1)) >= MIN_NUMBER_DIGITS:
        return NATIONAL
    if _DOTTED_NAME.match(v):
        return EMAIL
    if any(c.isspace() for c in value):
        return NAME
    if not _PATTERN.match(value):
        return BAD_CHARACTERS
    return None


def check(value: str) -> str:
    """``value`` if it is an acceptable pseudonymous id; else ValueError naming the reason (for
    pydantic's AfterValidator: a 422 naming the field and the reason)."""
    reason = problem(value)
    if reason is not None:
        raise ValueError(f"{reason}; a pseudonymous id is {RULE}")
    return value


def derive(secret: bytes, local_id: str, prefix: str = "P", length: int = 16) -> str:
    """The pseudonymous id an organisation gives the record it knows as ``local_id`` (its own patient
    number, say): ``prefix-`` + the first ``length`` characters of base32(HMAC-SHA256(secret,
    local_id)), lower case. Keep ``secret`` as safe as the patient index: whoever has it can test
    guesses of local numbers against ids."""
    if not re.fullmatch(r"[A-Za-z]{1,16}", prefix):
        raise ValueError("the prefix is 1 to 16 letters")
    if not 8 <= length <= 52:
        raise ValueError("length is 8 to 52 characters")
    if len(secret) < 16:
        raise ValueError("the secret has at least 16 bytes (128 bits)")
    local = local_id.strip()
    if not local:
        raise ValueError("the local identifier is empty")
    mac = hmac.new(secret, local.encode("utf-8"), hashlib.sha256).digest()
    pid = f"{prefix}-{base64.b32encode(mac).decode('ascii')[:length].lower()}"
    return check(pid)
