"""The one quiet-hours and working-hours type (rapport_shared.hours): wall-clock times in an IANA
zone, parse errors naming the field (an ``Invalid`` that is also a ``ValueError``)."""

from datetime import datetime, timezone

import pytest

from rapport_shared import hours
from rapport_shared.errors import Invalid

pytestmark = pytest.mark.unit


def test_quiet_hours_wrap_midnight_and_defer_to_their_end():
    qh = hours.QuietHours.parse({"start": "21:00", "end": "08:00", "timezone": "Europe/London"})
    late = datetime(2026, 1, 10, 22, 30, tzinfo=timezone.utc)  # 22:30 London (GMT)
    assert qh.next_allowed(late) == datetime(2026, 1, 11, 8, 0, tzinfo=timezone.utc)
    noon = datetime(2026, 1, 10, 12, 0, tzinfo=timezone.utc)
    assert qh.next_allowed(noon) == noon
    early = datetime(2026, 7, 10, 5, 0, tzinfo=timezone.utc)  # 06:00 BST → 08:00 BST = 07:00 UTC
    assert qh.next_allowed(early) == datetime(2026, 7, 10, 7, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("raw,field", [
    ({"start": "25:00", "end": "08:00", "timezone": "UTC"}, "quiet_hours.start"),
    ({"start": "21:00", "end": "8", "timezone": "UTC"}, "quiet_hours.end"),
    ({"start": "21:00", "end": "08:00", "timezone": "Mars/Olympus"}, "quiet_hours.timezone"),
    ({"start": "08:00", "end": "08:00", "timezone": "UTC"}, "quiet_hours"),
    ("21-08", "quiet_hours"),
])
def test_quiet_hours_that_do_not_parse_name_the_field(raw, field):
    with pytest.raises(hours.QuietHoursError) as e:
        hours.QuietHours.parse(raw)
    assert e.value.field == field


def test_working_hours_are_wall_clock_slots_in_the_clinicians_time_zone():
    wh = hours.WorkingHours.parse({"timezone": "Europe/London", "slots": [
        {"day": d, "start": "09:00", "end": "17:30"} for d in ("mon", "tue", "wed", "thu", "fri")] + [
        {"day": "sat", "start": "22:00", "end": "24:00"}]})
    monday = datetime(2026, 1, 12, 9, 0, tzinfo=timezone.utc)  # GMT: 09:00 London
    assert monday.weekday() == 0 and wh.within(monday)
    assert not wh.within(monday.replace(hour=8, minute=59))
    assert wh.within(monday.replace(hour=17, minute=29)) and not wh.within(monday.replace(hour=17, minute=30))
    assert not wh.within(datetime(2026, 1, 11, 12, 0, tzinfo=timezone.utc))  # Sunday
    assert wh.within(datetime(2026, 1, 10, 23, 59, tzinfo=timezone.utc))  # Saturday 23:59, up to 24:00
    summer = datetime(2026, 7, 13, 8, 30, tzinfo=timezone.utc)  # Monday 09:30 BST
    assert wh.within(summer) and not wh.within(summer.replace(hour=16, minute=45))  # 17:45 BST
    assert hours.WorkingHours.parse(None) is None


@pytest.mark.parametrize("raw,field", [
    ({"timezone": "Mars/Olympus", "slots": [{"day": "mon", "start": "09:00", "end": "17:00"}]}, "working_hours.timezone"),
    ({"timezone": "", "slots": [{"day": "mon", "start": "09:00", "end": "17:00"}]}, "working_hours.timezone"),
    ({"slots": [{"day": "mon", "start": "09:00", "end": "17:00"}]}, "working_hours.timezone"),
    ({"timezone": "UTC", "slots": []}, "working_hours.slots"),
    ({"timezone": "UTC", "slots": "mon 9-5"}, "working_hours.slots"),
    ({"timezone": "UTC", "slots": [{"day": "monday", "start": "09:00", "end": "17:00"}]}, "working_hours.slots.0.day"),
    ({"timezone": "UTC", "slots": [{"day": "mon", "start": "09:00", "end": "17:00"},
                                   {"day": "tue", "start": "9am", "end": "17:00"}]}, "working_hours.slots.1.start"),
    ({"timezone": "UTC", "slots": [{"day": "mon", "start": "09:00", "end": "24:30"}]}, "working_hours.slots.0.end"),
    ({"timezone": "UTC", "slots": [{"day": "mon", "start": "17:00", "end": "09:00"}]}, "working_hours.slots.0.end"),
    ({"timezone": "UTC", "slots": [{"day": "mon", "start": "09:00", "end": "17:00", "note": "x"}]},
     "working_hours.slots.0.note"),
    ({"timezone": "UTC", "slots": ["mon"]}, "working_hours.slots.0"),
    ({"timezone": "UTC", "slots": [{"day": "mon", "start": "09:00", "end": "17:00"}], "tz": "UTC"}, "working_hours.tz"),
    ("9-5", "working_hours"),
])
def test_working_hours_that_do_not_parse_name_the_field(raw, field):
    with pytest.raises(hours.WorkingHoursError) as e:
        hours.WorkingHours.parse(raw)
    assert e.value.field == field



def test_parse_errors_are_invalid_and_value_errors_naming_the_field():
    with pytest.raises(Invalid) as e:
        hours.QuietHours.parse({"start": "x", "end": "08:00", "timezone": "UTC"})
    assert isinstance(e.value, ValueError) and e.value.field == "quiet_hours.start"
    assert e.value.message == "must be HH:MM (24 h)" and str(e.value) == "quiet_hours.start: must be HH:MM (24 h)"
    assert e.value.code == "Invalid"


def test_json_shapes_round_trip():
    raw = {"timezone": "Europe/London", "slots": [{"day": "mon", "start": "09:00", "end": "17:00"},
                                                   {"day": "sat", "start": "22:00", "end": "24:00"}]}
    assert hours.WorkingHours.parse(raw).to_json() == raw
    qh = {"start": "21:00", "end": "08:00", "timezone": "Europe/London"}
    assert hours.QuietHours.parse(qh).to_json() == qh


def test_weekday_slots_are_the_same_hours_in_the_schedulers_shape():
    slots = [{"weekday": 5, "start": "09:00", "end": "17:00"}, {"weekday": 1, "start": "08:30", "end": "12:00"}]
    wh = hours.WorkingHours.from_weekday_slots("Europe/London", slots)
    assert wh.to_weekday_slots() == sorted(slots, key=lambda s: s["weekday"])
    assert wh.to_json()["slots"][0] == {"day": "mon", "start": "08:30", "end": "12:00"}
    monday = datetime(2026, 1, 12, 8, 30, tzinfo=timezone.utc)  # GMT: 08:30 London
    assert wh.contains(monday, monday.replace(hour=12, minute=0)) and wh.within(monday)
    assert not wh.contains(monday, monday.replace(hour=12, minute=1))
    assert not wh.contains(monday.replace(hour=23), monday.replace(day=13, hour=1))  # crosses midnight
    with pytest.raises(hours.WorkingHoursError) as e:
        hours.WorkingHours.from_weekday_slots("Mars/Olympus", slots)
    assert e.value.field == "timezone"


def test_quiet_hours_is_quiet():
    qh = hours.QuietHours.parse({"start": "21:00", "end": "08:00", "timezone": "UTC"})
    assert qh.is_quiet(datetime(2026, 1, 10, 22, 0, tzinfo=timezone.utc))
    assert not qh.is_quiet(datetime(2026, 1, 10, 8, 0, tzinfo=timezone.utc))
