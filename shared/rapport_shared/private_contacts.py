"""The private contacts path (architecture.md, "Privacy"): how a person's contact details and
channel preferences travel from intake (the writer) to the notifier (the reader) without ever
appearing on a partner-visible topic.

Topic ``rapport.private.contacts`` (``topics.PRIVATE_CONTACTS``; deliberately NOT in
``topics.SHARED_TOPICS``): compacted (``cleanup.policy=compact``), so it holds the latest record
per person, and access-restricted (in production Kafka ACLs: intake writes, the notifier reads,
no partner principal has any right on it). It is a table, not an event stream: its records are
not CloudEvents and carry no ``ce_*`` headers.

Record formats. ``contact.v2`` (written since crypto-shredding, issue 17) is encrypted with the
person's own data key; ``contact.v1`` (older records, still read) with the master key itself:

========  =====================================================================================
key       the pseudonymous person id (UTF-8), e.g. ``P-7f3a``: one live record per person
value     ``nonce (12 bytes) || AES-256-GCM ciphertext + tag`` of the UTF-8 JSON of
          ``ContactRecordV1``; associated data binds the ciphertext to its key id and its record
          key (a value copied under another person's key does not decrypt):
          v2: ``rapport.private.contacts/v2|<data key id>|<person id>``, key = the person's data key
          v1: ``rapport.private.contacts/v1|<kid>|<person id>``, key = master key ``kid``
          ``null`` = tombstone: the person's contact details were erased; compaction then
          removes every earlier value of that key
headers   ``rapport_record: contact.v2`` (or ``contact.v1``; format and version, on every record),
          ``rapport_alg: A256GCM`` and (values only) v2: ``rapport_dek: <data key id>``,
          v1: ``rapport_kid: <master key id>``,
          ``rapport_erased: true`` (tombstones only). Nothing personal is ever in a header.
========  =====================================================================================

Per-person data keys travel on their own compacted topic ``rapport.private.person-keys``
(``topics.PRIVATE_PERSON_KEYS``; intake writes, the notifier reads), never inside a contact record:

========  =====================================================================================
key       the pseudonymous person id: one live data key per person
value     the 32-byte data key wrapped by the master key: ``nonce || AES-256-GCM(master[kid])``,
          associated data ``rapport.private.person-keys/v1|<kid>|<data key id>|<person id>``
          ``null`` = tombstone: the person was erased and the data key destroyed
headers   ``rapport_record: person-key.v1``, ``rapport_alg: A256GCM``, ``rapport_kid: <master key
          id>``, ``rapport_dek: <data key id>`` (values only), ``rapport_erased: true`` (tombstones)
========  =====================================================================================

Erasure (crypto-shredding): intake destroys its copy of the data key and publishes the key's
tombstone; once compaction has removed the key's earlier values, a copy of the contacts topic
(a dump made before the erasure included) holds only ciphertext whose key exists nowhere.
What this does not protect against is described in docs/privacy.md (a dump of *both* topics
made before the erasure, plus the master key, still decrypts: rotate the master key and drop the
old one to close that too).

Master keys rotate: every value names its key id; readers hold a ``Keyring`` of every key still in use
and writers encrypt with its active key. To retire a key, make a new one active, have intake
republish every contact (``POST /v1/admin/contacts/republish``: every live data key is re-wrapped
with the active master key, every contact re-encrypted with its person's data key, v1 records
included) and, once compaction has removed the old values, drop the old key. Dropping a key also
makes anything still encrypted or wrapped with it unreadable.

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
from .topics import ERASURES, PRIVATE_CONTACTS, PRIVATE_PERSON_KEYS

RECORD_FORMAT = "contact.v1"  # master-key records (before crypto-shredding); still read
RECORD_FORMAT_V2 = "contact.v2"  # encrypted with the person's data key
KEY_FORMAT = "person-key.v1"  # rapport.private.person-keys
ERASURE_FORMAT = "erasure.v1"  # rapport.erasures
ALGORITHM = "A256GCM"
NONCE_BYTES = 12
DATA_KEY_BYTES = 32
H_RECORD, H_ALG, H_KID, H_ERASED = "rapport_record", "rapport_alg", "rapport_kid", "rapport_erased"
H_DEK = "rapport_dek"

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
# The person-keys topic: compacted like the contacts topic (a destroyed key's earlier values are
# gone from the broker's disks within max.compaction.lag.ms of the tombstone).
KEYS_TOPIC_CONFIG = dict(DEFAULT_TOPIC_CONFIG)
# Erasure notices are kept (a consumer that was down for weeks still erases when it comes back).
ERASURES_TOPIC_CONFIG = {"cleanup.policy": "delete", "retention.ms": "-1"}

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
    topic: str = PRIVATE_CONTACTS  # where it is published

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


def _aad_v2(dek_id: str, person_id: str) -> bytes:
    return f"rapport.private.contacts/v2|{dek_id}|{person_id}".encode()


def _aad_key(kid: str, dek_id: str, person_id: str) -> bytes:
    return f"rapport.private.person-keys/v1|{kid}|{dek_id}|{person_id}".encode()


@dataclass(frozen=True)
class DataKey:
    """A person's data key in the clear (only ever in memory)."""

    dek_id: str
    key: bytes = field(repr=False)

    @classmethod
    def generate(cls) -> "DataKey":
        import uuid  # noqa: PLC0415

        return cls(uuid.uuid4().hex, os.urandom(DATA_KEY_BYTES))


@dataclass(frozen=True)
class WrappedKey:
    """A person's data key as stored (intake's ``person_keys``) and published: wrapped by master
    key ``kid``, bound to the person and the data key id."""

    person_id: str
    dek_id: str
    kid: str
    wrapped: bytes = field(repr=False)

    def unwrap(self, keyring: Keyring) -> DataKey:
        if len(self.wrapped) <= NONCE_BYTES:
            raise ContactRecordError("wrapped data key too short")
        try:
            key = AESGCM(keyring.key(self.kid)).decrypt(self.wrapped[:NONCE_BYTES], self.wrapped[NONCE_BYTES:],
                                                        _aad_key(self.kid, self.dek_id, self.person_id))
        except InvalidTag:
            raise ContactRecordError(f"data key does not unwrap with master key {self.kid!r} for this person") from None
        if len(key) != DATA_KEY_BYTES:
            raise ContactRecordError("data key has the wrong length")
        return DataKey(self.dek_id, key)


def wrap_data_key(person_id: str, data_key: DataKey, keyring: Keyring, *, nonce: bytes | None = None) -> WrappedKey:
    """``data_key`` wrapped by the keyring's active master key (rotation = wrap again)."""
    if not _KID.match(data_key.dek_id):
        raise ValueError(f"data key id must match {_KID.pattern}")
    kid = keyring.active
    nonce = nonce if nonce is not None else os.urandom(NONCE_BYTES)
    sealed = AESGCM(keyring.key(kid)).encrypt(nonce, data_key.key, _aad_key(kid, data_key.dek_id, person_id))
    return WrappedKey(person_id, data_key.dek_id, kid, nonce + sealed)


def encode_person_key(wrapped: WrappedKey) -> PrivateRecord:
    return PrivateRecord(key=wrapped.person_id.encode(), value=wrapped.wrapped,
                         headers={H_RECORD: KEY_FORMAT, H_ALG: ALGORITHM, H_KID: wrapped.kid, H_DEK: wrapped.dek_id},
                         topic=PRIVATE_PERSON_KEYS)


def encode_person_key_tombstone(person_id: str) -> PrivateRecord:
    return PrivateRecord(key=person_id.encode(), value=None, headers={H_RECORD: KEY_FORMAT, H_ERASED: "true"},
                         topic=PRIVATE_PERSON_KEYS)


def decode_person_key(key: bytes | None, value: bytes | None, headers) -> WrappedKey | None:
    """A record of ``rapport.private.person-keys``: the wrapped data key, or ``None`` for a
    tombstone (the person's key was destroyed: forget it and everything decrypted with it).
    Raises ``ContactRecordError`` (and nothing else) for anything unreadable."""
    try:
        person_id = person_id_of(key)
        h = _headers(headers)
        if h.get(H_RECORD) != KEY_FORMAT:
            raise ContactRecordError(f"header {H_RECORD} must be {KEY_FORMAT!r}, got {h.get(H_RECORD, '')[:64]!r}")
        if value is None:
            return None
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise ContactRecordError(f"value is {type(value).__name__}, not bytes")
        if h.get(H_ALG) != ALGORITHM:
            raise ContactRecordError(f"header {H_ALG} must be {ALGORITHM!r}, got {h.get(H_ALG, '')[:64]!r}")
        kid, dek_id = h.get(H_KID, ""), h.get(H_DEK, "")
        if not _KID.match(kid) or not _KID.match(dek_id):
            raise ContactRecordError("key record names no valid master key id or data key id")
        return WrappedKey(person_id, dek_id, kid, bytes(value))
    except ContactRecordError:
        raise
    except Exception as exc:
        raise ContactRecordError(f"key record cannot be read: {type(exc).__name__}") from None


def data_keys_from_records(records: Iterable, keyring: Keyring) -> dict[str, DataKey]:
    """Replay ``rapport.private.person-keys`` records (objects with ``key``, ``value``,
    ``headers``, in topic order) into data key id → data key, as a reader holds them: a
    tombstone forgets every data key of its person. Unreadable records are ignored."""
    by_person: dict[str, dict[str, DataKey]] = {}
    for r in records:
        try:
            wrapped = decode_person_key(r.key, r.value, r.headers)
            if wrapped is None:
                by_person.pop(person_id_of(r.key), None)
            else:
                by_person.setdefault(wrapped.person_id, {})[wrapped.dek_id] = wrapped.unwrap(keyring)
        except ContactRecordError:
            continue
    return {dek: dk for keys in by_person.values() for dek, dk in keys.items()}


def encode_contact(record: ContactRecordV1, keyring: Keyring, *, data_key: DataKey | None = None,
                   nonce: bytes | None = None) -> PrivateRecord:
    """``contact.v2`` encrypted with the person's ``data_key``; without one the legacy
    ``contact.v1`` encrypted with the master key (kept for readers' tests and old tools)."""
    nonce = nonce if nonce is not None else os.urandom(NONCE_BYTES)
    plaintext = record.model_dump_json().encode()
    if data_key is not None:
        sealed = AESGCM(data_key.key).encrypt(nonce, plaintext, _aad_v2(data_key.dek_id, record.person_id))
        return PrivateRecord(key=record.person_id.encode(), value=nonce + sealed,
                             headers={H_RECORD: RECORD_FORMAT_V2, H_ALG: ALGORITHM, H_DEK: data_key.dek_id})
    kid = keyring.active
    sealed = AESGCM(keyring.key(kid)).encrypt(nonce, plaintext, _aad(kid, record.person_id))
    return PrivateRecord(
        key=record.person_id.encode(), value=nonce + sealed,
        headers={H_RECORD: RECORD_FORMAT, H_ALG: ALGORITHM, H_KID: kid},
    )


def encode_tombstone(person_id: str) -> PrivateRecord:
    return PrivateRecord(key=person_id.encode(), value=None, headers={H_RECORD: RECORD_FORMAT, H_ERASED: "true"})  # v1: old readers erase too


class DataKeyUnavailable(ContactRecordError):
    """A ``contact.v2`` record whose data key the reader does not hold: not read yet (the key
    record is on another topic), or destroyed (the person was erased)."""

    def __init__(self, dek_id: str) -> None:
        super().__init__(f"no data key {dek_id[:64]!r} (not received yet, or destroyed by an erasure)")
        self.dek_id = dek_id


def data_key_id_of(headers) -> str | None:
    """The data key id a ``contact.v2`` record names (None for v1 records and tombstones)."""
    h = _headers(headers)
    return h.get(H_DEK) if h.get(H_RECORD) == RECORD_FORMAT_V2 else None


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


def headers_text(headers) -> dict[str, str]:
    """A record's headers as text (never failing; see ``_headers``)."""
    return _headers(headers)


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


DataKeys = Mapping[str, DataKey]


def decode_record(key: bytes | None, value: bytes | None, headers, keyring: Keyring,
                  data_keys: DataKeys | None = None) -> ContactRecordV1 | None:
    """The contact a record carries, or ``None`` for a tombstone (erase what you hold for ``key``).
    ``contact.v1`` records decrypt with ``keyring``; ``contact.v2`` with the person's data key
    from ``data_keys`` (data key id → key; ``DataKeyUnavailable`` if it is not there).

    Raises ``ContactRecordError`` — and nothing else, whatever the bytes — for anything else: a
    key that is not a person id (``person_id_of``), unknown format or key id, a value that does not
    decrypt under its key id and record key, or plaintext that is not a contact. Messages name
    what is wrong, never the contact data (they are logged)."""
    try:
        return _decode_record(key, value, headers, keyring, data_keys or {})
    except ContactRecordError:
        raise
    except Exception as exc:  # a shape nobody foresaw: unreadable, never a crash of the reader
        raise ContactRecordError(f"record cannot be read: {type(exc).__name__}") from None


def _decode_record(key: bytes | None, value: bytes | None, headers, keyring: Keyring,
                   data_keys: DataKeys) -> ContactRecordV1 | None:
    person_id = person_id_of(key)
    h = _headers(headers)
    fmt = h.get(H_RECORD)
    if fmt not in (RECORD_FORMAT, RECORD_FORMAT_V2):
        raise ContactRecordError(f"header {H_RECORD} must be {RECORD_FORMAT_V2!r} or {RECORD_FORMAT!r}, "
                                 f"got {h.get(H_RECORD, '')[:64]!r}")
    if value is None:
        return None
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise ContactRecordError(f"value is {type(value).__name__}, not bytes")
    value = bytes(value)
    if h.get(H_ALG) != ALGORITHM:
        raise ContactRecordError(f"header {H_ALG} must be {ALGORITHM!r}, got {h.get(H_ALG, '')[:64]!r}")
    if len(value) <= NONCE_BYTES:
        raise ContactRecordError("value too short")
    if fmt == RECORD_FORMAT_V2:
        dek_id = h.get(H_DEK, "")
        if not _KID.match(dek_id):
            raise ContactRecordError(f"header {H_DEK} is not a data key id")
        data_key = data_keys.get(dek_id)
        if data_key is None:
            raise DataKeyUnavailable(dek_id)
        key_bytes, aad, what = data_key.key, _aad_v2(dek_id, person_id), f"data key {dek_id!r}"
    else:
        kid = h.get(H_KID, "")
        key_bytes, aad, what = keyring.key(kid), _aad(kid, person_id), f"key {kid!r}"
    try:
        plaintext = AESGCM(key_bytes).decrypt(value[:NONCE_BYTES], value[NONCE_BYTES:], aad)
    except InvalidTag:
        raise ContactRecordError(f"value does not decrypt with {what} for this record key") from None
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


@dataclass(frozen=True)
class ErasureNotice:
    """On ``rapport.erasures`` (key = person id; JSON value; header ``rapport_record: erasure.v1``):
    an organisation's admin erased a person. Only the pseudonymous id, the organisation code
    (None = every organisation: erasures recorded before notices existed) and the time."""

    person_id: str
    organisation_id: str | None
    erased_at: datetime

    def record(self) -> PrivateRecord:
        body = {"person_id": self.person_id, "organisation_id": self.organisation_id,
                "erased_at": self.erased_at.isoformat()}
        return PrivateRecord(key=self.person_id.encode(), value=json.dumps(body).encode(),
                             headers={H_RECORD: ERASURE_FORMAT}, topic=ERASURES)


def decode_erasure(key: bytes | None, value: bytes | None, headers) -> ErasureNotice:
    """Raises ``ContactRecordError`` for anything that is not an erasure notice."""
    person_id = person_id_of(key)
    if _headers(headers).get(H_RECORD) != ERASURE_FORMAT or not value:
        raise ContactRecordError(f"not an {ERASURE_FORMAT} record")
    try:
        body = json.loads(bytes(value))
        org = body.get("organisation_id")
        notice = ErasureNotice(person_id, org if isinstance(org, str) and org else None,
                               datetime.fromisoformat(body["erased_at"]))
    except Exception as exc:
        raise ContactRecordError(f"erasure notice cannot be read: {type(exc).__name__}") from None
    if body.get("person_id") != person_id:
        raise ContactRecordError("record key and person id differ")
    return notice


async def ensure_private_topic(bootstrap: str, partitions: int, replication: int,
                               config: Mapping[str, str] | None = None, topic: str = PRIVATE_CONTACTS) -> None:
    """Create ``topic`` (default ``rapport.private.contacts``) with ``config`` (default compacted);
    if it exists without that configuration (e.g. auto-created by a reader), set it."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
    from aiokafka.errors import TopicAlreadyExistsError

    wanted = dict(config or DEFAULT_TOPIC_CONFIG)
    from .kafka_admin import client_kwargs  # late: aiokafka is only needed here

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client_kwargs())
    await admin.start()
    try:
        if topic not in set(await admin.list_topics()):
            try:
                await admin.create_topics([NewTopic(topic, partitions, replication, topic_configs=wanted)])
                return
            except TopicAlreadyExistsError:
                pass
        current = await topic_config(admin, topic)
        if any(current.get(k) != v for k, v in wanted.items()):
            await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs=wanted)])
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
