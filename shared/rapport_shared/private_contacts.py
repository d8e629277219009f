"""The private contacts path (architecture.md, "Privacy"): how a person's contact details and
channel preferences travel from intake (the writer) to the notifier (the reader) without ever
appearing on a partner-visible topic.

Topic ``rapport.private.contacts`` (``topics.PRIVATE_CONTACTS``; deliberately NOT in
``topics.SHARED_TOPICS``): compacted (``cleanup.policy=compact``), so it holds the latest record
per person, and access-restricted (in production Kafka ACLs: intake writes, the notifier reads,
no partner principal has any right on it). It is a table, not an event stream: its records are
not CloudEvents and carry no ``ce_*`` headers.

Record format, version 1:

========  =====================================================================================
key       the pseudonymous person id (UTF-8), e.g. ``P-7f3a``: one live record per person
value     ``nonce (12 bytes) || AES-256-GCM ciphertext + tag`` of the UTF-8 JSON of
          ``ContactRecordV1``; associated data ``rapport.private.contacts/v1|<kid>|<person id>``
          binds the ciphertext to its key id and its record key (a value copied under another
          person's key does not decrypt)
          ``null`` = tombstone: the person's contact details were erased; compaction then
          removes every earlier value of that key
headers   ``rapport_record: contact.v1`` (format and version, on every record),
          ``rapport_alg: A256GCM`` and ``rapport_kid: <key id>`` (values only),
          ``rapport_erased: true`` (tombstones only). Nothing personal is ever in a header.
========  =====================================================================================

Keys rotate: every value names its key id; readers hold a ``Keyring`` of every key still in use
and writers encrypt with its active key. To retire a key, make a new one active, have intake
republish every contact (``POST /v1/admin/contacts/republish``) and, once compaction has removed
the old values, drop the old key. Dropping a key also makes anything still encrypted with it
unreadable ("crypto-shredding").

Configuration (both services): ``RAPPORT_CONTACTS_KEYS`` = JSON object key id → base64 of a
32-byte key, ``RAPPORT_CONTACTS_ACTIVE_KEY`` = the key id to encrypt with. The built-in
development key is refused in production.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Iterable, Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints, ValidationError

from .contracts.base import PseudonymousId
from .topics import PRIVATE_CONTACTS

RECORD_FORMAT = "contact.v1"
ALGORITHM = "A256GCM"
NONCE_BYTES = 12
H_RECORD, H_ALG, H_KID, H_ERASED = "rapport_record", "rapport_alg", "rapport_kid", "rapport_erased"

# Development only: fixed so that intake and notifier agree without configuration.
DEV_KEY_ID = "dev-1"
DEV_KEYS_JSON = json.dumps({DEV_KEY_ID: base64.b64encode(b"dev-only-contacts-key-0123456789").decode()})

# Compaction keeps the latest record per person; these bound how long an erased value can
# survive on disk (max.compaction.lag.ms forces the cleaner, and a segment roll, within a day)
# and how long a tombstone stays readable for a lagging reader (delete.retention.ms).
DEFAULT_TOPIC_CONFIG = {
    "cleanup.policy": "compact",
    "min.cleanable.dirty.ratio": "0.1",
    "max.compaction.lag.ms": str(24 * 3600 * 1000),
    "delete.retention.ms": str(7 * 24 * 3600 * 1000),
}

_KID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
HHMM = Annotated[str, StringConstraints(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]
# What a writer (intake) accepts for ContactRecordV1.language: an ISO 639 code, lower case.
LanguageCode = Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True, pattern=r"^\s*[A-Za-z]{2,3}\s*$")]


class Channel(StrEnum):
    email = "email"
    sms = "sms"


class QuietHours(BaseModel):
    """No non-urgent message between ``start`` and ``end`` (local time; may wrap midnight)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    start: HHMM
    end: HHMM
    timezone: str = Field(description="IANA time zone, e.g. Europe/London")


class ContactRecordV1(BaseModel):
    """The plaintext inside a value: personal data, only ever stored encrypted on Kafka."""

    model_config = ConfigDict(frozen=True, extra="ignore")  # tolerant reader, like EventData
    person_id: PseudonymousId
    name: str | None = None
    email: str | None = None
    phone: str | None = Field(default=None, description="E.164, e.g. +447700900123")
    channel_consent: dict[Channel, StrictBool] = Field(default_factory=dict)
    preferred_channel: Channel | None = None
    quiet_hours: QuietHours | None = None
    # Added after v1 shipped: optional, so records written before it still decode (the format
    # stays contact.v1). A language code such as "en"; None = the notifier's default language.
    # Tolerant here (a reader falls back to its default for a language it cannot serve).
    language: str | None = Field(default=None, max_length=35, description="language code, e.g. en, es")
    updated_at: datetime


class ContactRecordError(ValueError):
    """A record on the private topic that cannot be read (unknown key, tampered, wrong format)."""


@dataclass(frozen=True)
class PrivateRecord:
    key: bytes
    value: bytes | None  # None = tombstone
    headers: dict[str, str] = field(default_factory=dict)

    def kafka_headers(self) -> list[tuple[str, bytes]]:
        return [(k, v.encode()) for k, v in self.headers.items()]


def _b64(text: str) -> bytes:
    text = text.strip()
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_" if ("-" in text or "_" in text) else None,
                                validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not base64: {exc}") from exc


class Keyring:
    """Every AES-256 key still in use, by key id, and the one new values are encrypted with."""

    def __init__(self, keys: Mapping[str, bytes], active: str) -> None:
        for kid, key in keys.items():
            if not _KID.match(kid):
                raise ValueError(f"contacts key id {kid!r} must match {_KID.pattern}")
            if len(key) != 32:
                raise ValueError(f"contacts key {kid!r} must be 32 bytes (AES-256), got {len(key)}")
        if active not in keys:
            raise ValueError(f"active contacts key {active!r} is not in the keyring ({', '.join(sorted(keys)) or 'empty'})")
        self._keys = dict(keys)
        self.active = active

    @classmethod
    def from_config(cls, keys_json: str, active: str) -> "Keyring":
        try:
            raw = json.loads(keys_json)
        except ValueError as exc:
            raise ValueError(f"RAPPORT_CONTACTS_KEYS is not JSON: {exc}") from exc
        if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
            raise ValueError("RAPPORT_CONTACTS_KEYS must be a JSON object of key id -> base64 key")
        return cls({kid: _b64(v) for kid, v in raw.items()}, active)

    @classmethod
    def development(cls) -> "Keyring":
        return cls.from_config(DEV_KEYS_JSON, DEV_KEY_ID)

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(sorted(self._keys))

    def is_development(self) -> bool:
        dev = json.loads(DEV_KEYS_JSON)
        return any(_b64(dev[DEV_KEY_ID]) == k for k in self._keys.values())

    def key(self, kid: str) -> bytes:
        try:
            return self._keys[kid]
        except KeyError:
            raise ContactRecordError(f"unknown contacts key id {kid!r}") from None


def _aad(kid: str, person_id: str) -> bytes:
    return f"rapport.private.contacts/v1|{kid}|{person_id}".encode()


def encode_contact(record: ContactRecordV1, keyring: Keyring, *, nonce: bytes | None = None) -> PrivateRecord:
    kid = keyring.active
    nonce = nonce if nonce is not None else os.urandom(NONCE_BYTES)
    plaintext = record.model_dump_json().encode()
    sealed = AESGCM(keyring.key(kid)).encrypt(nonce, plaintext, _aad(kid, record.person_id))
    return PrivateRecord(
        key=record.person_id.encode(), value=nonce + sealed,
        headers={H_RECORD: RECORD_FORMAT, H_ALG: ALGORITHM, H_KID: kid},
    )


def encode_tombstone(person_id: str) -> PrivateRecord:
    return PrivateRecord(key=person_id.encode(), value=None, headers={H_RECORD: RECORD_FORMAT, H_ERASED: "true"})


def _headers(headers: Iterable[tuple[str, bytes | str | None]] | Mapping[str, object] | None) -> dict[str, str]:
    """Header values as text, never failing: an undecodable byte becomes U+FFFD (and then simply
    does not equal the expected format, algorithm or key id)."""
    items = headers.items() if isinstance(headers, Mapping) else (headers or ())
    out: dict[str, str] = {}
    for item in items:
        try:
            k, v = item
        except (TypeError, ValueError):
            continue
        if not isinstance(k, str):
            continue
        out[k] = (bytes(v).decode("utf-8", "replace") if isinstance(v, (bytes, bytearray, memoryview))
                  else ("" if v is None else str(v)))[:256]
    return out


_PERSON_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")  # contracts.base.PseudonymousId
MAX_KEY_BYTES = 64


def person_id_of(key: bytes | None) -> str:
    """The person id a record key names. Raises ``ContactRecordError`` for anything that is not a
    pseudonymous id (no key, not UTF-8, too long, wrong characters) — tombstones included, so a
    reader never acts on, stores or logs a key it cannot trust. The message never repeats the key."""
    if not key:
        raise ContactRecordError("record has no key (the person id)")
    if not isinstance(key, (bytes, bytearray, memoryview)):
        raise ContactRecordError(f"record key is {type(key).__name__}, not bytes")
    key = bytes(key)
    if len(key) > MAX_KEY_BYTES:
        raise ContactRecordError(f"record key is {len(key)} bytes; a person id has at most {MAX_KEY_BYTES}")
    try:
        person_id = key.decode("utf-8")
    except UnicodeDecodeError:
        raise ContactRecordError("record key is not UTF-8") from None
    if not _PERSON_ID.match(person_id):
        raise ContactRecordError("record key is not a pseudonymous person id")
    return person_id


def _has_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(_has_nul(v) for v in value)
    return False


def decode_record(key: bytes | None, value: bytes | None, headers, keyring: Keyring) -> ContactRecordV1 | None:
    """The contact a record carries, or ``None`` for a tombstone (erase what you hold for ``key``).

    Raises ``ContactRecordError`` — and nothing else, whatever the bytes — for anything else: a
    key that is not a person id (``person_id_of``), unknown format or key id, a value that does not
    decrypt under its key id and record key, or plaintext that is not a contact. Messages name
    what is wrong, never the contact data (they are logged)."""
    try:
        return _decode_record(key, value, headers, keyring)
    except ContactRecordError:
        raise
    except Exception as exc:  # a shape nobody foresaw: unreadable, never a crash of the reader
        raise ContactRecordError(f"record cannot be read: {type(exc).__name__}") from None


def _decode_record(key: bytes | None, value: bytes | None, headers, keyring: Keyring) -> ContactRecordV1 | None:
    person_id = person_id_of(key)
    h = _headers(headers)
    if h.get(H_RECORD) != RECORD_FORMAT:
        raise ContactRecordError(f"header {H_RECORD} must be {RECORD_FORMAT!r}, got {h.get(H_RECORD, '')[:64]!r}")
    if value is None:
        return None
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise ContactRecordError(f"value is {type(value).__name__}, not bytes")
    value = bytes(value)
    if h.get(H_ALG) != ALGORITHM:
        raise ContactRecordError(f"header {H_ALG} must be {ALGORITHM!r}, got {h.get(H_ALG, '')[:64]!r}")
    kid = h.get(H_KID, "")
    if len(value) <= NONCE_BYTES:
        raise ContactRecordError("value too short")
    try:
        plaintext = AESGCM(keyring.key(kid)).decrypt(value[:NONCE_BYTES], value[NONCE_BYTES:], _aad(kid, person_id))
    except InvalidTag:
        raise ContactRecordError(f"value does not decrypt with key {kid!r} for this record key") from None
    try:
        record = ContactRecordV1.model_validate_json(plaintext)
    except ValidationError as exc:
        # Field names and error types only: the input is personal data and must not reach a log.
        where = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(root)'}: {e['type']}"
                          for e in exc.errors(include_input=False, include_url=False, include_context=False)[:5])
        raise ContactRecordError(f"plaintext is not a contact record: {where}") from None
    if record.person_id != person_id:
        raise ContactRecordError("record key and person id differ")
    if _has_nul(record.model_dump(mode="json")):
        raise ContactRecordError("contact record contains a NUL character (not storable)")
    return record


async def ensure_private_topic(bootstrap: str, partitions: int, replication: int,
                               config: Mapping[str, str] | None = None) -> None:
    """Create ``rapport.private.contacts`` compacted; if it exists without compaction (e.g.
    auto-created by a reader), set the configuration."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
    from aiokafka.errors import TopicAlreadyExistsError

    wanted = dict(config or DEFAULT_TOPIC_CONFIG)
    from .kafka import client_kwargs  # late: kafka.py pulls in FastStream

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client_kwargs())
    await admin.start()
    try:
        if PRIVATE_CONTACTS not in set(await admin.list_topics()):
            try:
                await admin.create_topics([NewTopic(PRIVATE_CONTACTS, partitions, replication, topic_configs=wanted)])
                return
            except TopicAlreadyExistsError:
                pass
        current = await topic_config(admin, PRIVATE_CONTACTS)
        if any(current.get(k) != v for k, v in wanted.items()):
            await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, PRIVATE_CONTACTS, configs=wanted)])
    finally:
        await admin.close()


async def topic_config(admin, topic: str) -> dict[str, str]:
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    out: dict[str, str] = {}
    for resource in response.resources:
        for entry in resource[4]:  # (name, value, read_only, is_default, is_sensitive[, synonyms])
            out[entry[0]] = entry[1]
    return out
