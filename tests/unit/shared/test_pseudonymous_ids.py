"""Pseudonymous ids (issue 17, item 1): the documented format, look-alikes of personal data refused
with their reason (never the value), the published JSON-Schema pattern unchanged, and the keyed
hash an organisation derives its ids with."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re

import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError

from rapport_intake.domain import commands
from rapport_shared import pseudonyms
from rapport_tools.admin import admin_main
from rapport_shared.contracts import EVENT_MODELS, IntakeCompletedV1, PseudonymousId, StrictPseudonymousId

STRICT = TypeAdapter(StrictPseudonymousId)
RECORDED = TypeAdapter(PseudonymousId)
PHONE, EMAIL, NATIONAL = "phone number", "email address", "national or medical record number"

# The four examples of the issue: all validated before.
ISSUE_EXAMPLES = [
    ("943-476-5919", PHONE),  # a US phone number and an NHS number alike: the reason names both
    ("123-45-6789", NATIONAL),  # a US social security number
    ("alex.example", EMAIL),  # an e-mail's local part / a first.last name
    ("MRN:00012345", NATIONAL),
]

REFUSED = ISSUE_EXAMPLES + [
    # phone numbers: country codes, spaces, dots, brackets, bare digits
    ("+44 7700 900123", PHONE),
    ("+447700900123", PHONE),
    ("0044 7700 900123", PHONE),
    ("07700 900123", PHONE),
    ("07700.900.123", PHONE),
    ("(555) 123-4567", PHONE),
    ("555.123.4567", PHONE),
    ("07700900123", PHONE),
    # e-mail addresses, their local parts, domains
    ("grace@example.org", EMAIL),
    ("dr.jones@clinic.org", EMAIL),
    ("grace.hopper", EMAIL),
    ("example.org", EMAIL),
    # national ids
    ("123 45 6789", NATIONAL),  # US SSN with spaces
    ("943 476 5919", PHONE),  # NHS number as written on letters (also a phone number)
    ("9434765919", NATIONAL),  # NHS number, 10 digits
    ("QQ123456C", NATIONAL),  # UK National Insurance number
    ("qq 12 34 56 c", NATIONAL),
    ("AB123456D", NATIONAL),
    # medical record numbers
    ("MRN-00012345", NATIONAL),
    ("mrn00012345", NATIONAL),
    ("NHS-9434765919", NATIONAL),
    ("NHS 943 476 5919", NATIONAL),
    ("CHI-0101801234", NATIONAL),
    ("P-00012345", NATIONAL),  # a prefix, then only digits (7 or more): a local number in disguise
    ("P-1234567", NATIONAL),
    ("P_0123-4567", NATIONAL),
    ("P12345678", NATIONAL),
    # dates, names, wrong characters
    ("1980-01-02", "date"),
    ("02/01/1980", "date"),
    ("Grace Hopper", "name"),
    ("", "not a pseudonymous id"),
    ("-P-1", "not a pseudonymous id"),
    ("P-" + "a" * 63, "not a pseudonymous id"),
]

ACCEPTED = ["P-7f3a9c", "clin-001", "org-test", "P-mx1a2b3c", "P-1", "P-42", "P-000123", "P-123456", "c1", "ic-7",
            "org-a", "partner-clinic-1", "P-dk-3", "oncall-1", "nhs-lothian", "P-t0123456789ab", "P-fuzz-12345678",
            "P-qq3qttcqbuec4k6a", "clin-wlp42go7pmhiruem", "P_k7qm2x4avd3fj6ta", "clin.a"]


@pytest.mark.parametrize("value,reason", REFUSED, ids=[v or "empty" for v, _ in REFUSED])
def test_look_alikes_of_personal_data_are_refused_with_their_reason(value, reason):
    with pytest.raises(ValidationError) as e:
        STRICT.validate_python(value)
    [err] = e.value.errors()
    assert reason in err["msg"] and "pseudonymous id is" in err["msg"], err
    if len(value) > 3:  # the reason never repeats the value (errors are logged and returned)
        assert value not in err["msg"]


@pytest.mark.parametrize("value", ACCEPTED)
def test_opaque_ids_are_accepted(value):
    assert STRICT.validate_python(value) == value and pseudonyms.problem(value) is None


def test_the_four_examples_of_the_issue_are_refused_in_a_referral():
    for value, reason in ISSUE_EXAMPLES:
        with pytest.raises(ValidationError) as e:
            commands.OpenReferral(person_id=value, referral_source="gp", target_condition="depression")
        [err] = e.value.errors()
        assert err["loc"] == ("person_id",) and reason in err["msg"]


@pytest.mark.parametrize("value", ["943-476-5919", "clin@example.org", "QQ123456C"])
def test_clinician_ids_follow_the_same_rule(value):
    with pytest.raises(ValidationError, match="looks like"):
        commands.AssignClinician(clinician_id=value)
    with pytest.raises(ValidationError, match="looks like"):
        commands.CompleteIntake(clinician_id=value)


def test_records_already_written_stay_readable():
    """Events and contact records keep the published pattern only: a replay reads every record
    written before the format was enforced (the strict rule is for new ids at the HTTP edge)."""
    assert RECORDED.validate_python("943-476-5919") == "943-476-5919"
    with pytest.raises(ValidationError):
        RECORDED.validate_python("grace@example.org")  # the pattern still refuses '@', '+', spaces
    with pytest.raises(ValidationError) as e:  # (other fields missing: only the person id matters here)
        IntakeCompletedV1.model_validate({"person_id": "943-476-5919", "clinician_id": "12345678"})
    locs = {err["loc"][0] for err in e.value.errors()}
    assert "person_id" not in locs and "clinician_id" not in locs


def test_the_published_pattern_is_unchanged_and_describes_the_runtime_rule():
    """Tightening the pattern would be a breaking contract change (contracts.compat): it stays, a
    sound superset of the strict rule, and the description states the rule."""
    assert pseudonyms.PATTERN == r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
    for model in EVENT_MODELS.values():
        text = json.dumps(model.model_json_schema(mode="serialization"))
        for pattern in re.findall(r'"pattern": "(\^\[A-Za-z0-9\]\[A-Za-z0-9[^"]*)"', text):
            assert json.loads(f'"{pattern}"') == pseudonyms.PATTERN
    person = IntakeCompletedV1.model_json_schema()["properties"]["person_id"]
    assert person["pattern"] == pseudonyms.PATTERN and "looks like a phone number" in person["description"]

    class Strict(BaseModel):
        person_id: StrictPseudonymousId

    assert Strict.model_json_schema()["properties"]["person_id"]["pattern"] == pseudonyms.PATTERN
    for value in ACCEPTED:  # every id the strict rule accepts matches the published pattern
        assert re.match(pseudonyms.PATTERN, value)


def test_an_organisation_derives_ids_with_a_keyed_hash():
    secret = b"s" * 32
    pid = pseudonyms.derive(secret, "00012345")
    mac = hmac.new(secret, b"00012345", hashlib.sha256).digest()
    assert pid == "P-" + base64.b32encode(mac).decode()[:16].lower()
    assert pid == pseudonyms.derive(secret, "00012345")  # stable: the same patient, the same person id
    assert pid != pseudonyms.derive(b"t" * 32, "00012345")  # another organisation's key, another id
    assert pseudonyms.derive(secret, "00012345", prefix="clin").startswith("clin-")
    # the local number itself never appears; the id passes the strict rule, for any local number
    for n in range(2000):
        local = f"{n:08d}"
        derived = pseudonyms.derive(secret, local)
        assert local not in derived and STRICT.validate_python(derived) == derived
    for bad in [dict(secret=b"short", local_id="1"), dict(secret=secret, local_id=" "),
                dict(secret=secret, local_id="1", prefix="P1")]:
        with pytest.raises(ValueError):
            pseudonyms.derive(**bad)


def test_rapport_admin_pseudonym(tmp_path, capsys):
    key = tmp_path / "org.key"
    key.write_bytes(b"k" * 32)
    assert admin_main(["pseudonym", "--key-file", str(key), "00012345", "943-476-5919"]) == 0
    out = capsys.readouterr().out.split()
    assert out == [pseudonyms.derive(b"k" * 32, "00012345"), pseudonyms.derive(b"k" * 32, "943-476-5919")]
    assert admin_main(["pseudonym", "--key-file", str(key), "--prefix", "clin", "7"]) == 0
    assert capsys.readouterr().out.startswith("clin-")
