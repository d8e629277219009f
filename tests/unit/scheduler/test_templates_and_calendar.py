"""Templates as data and the booking rules (pure)."""

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from rapport_shared.contracts import Phase
from rapport_shared.contracts.course import SessionKind
from rapport_shared.hours import WorkingHours
from rapport_scheduler.domain import templates as T
from rapport_scheduler.domain.calendar import BookingRules, NoBookableSlot, Refusal

pytestmark = pytest.mark.unit
LONDON = ZoneInfo("Europe/London")


@pytest.mark.parametrize("tid,n,i,t", [("ipt-standard", 16, 3, 3), ("ipt-12", 12, 3, 3), ("ipt-brief", 8, 2, 2),
                                        ("ipt-a", 12, 3, 3), ("ipt-group", 16, 3, 5), ("ipt-ed", 20, 4, 4)])
def test_the_six_templates_of_domain_md(tid, n, i, t):
    tpl = T.template(tid)
    assert (tpl.sessions, tpl.initial, tpl.termination, tpl.cadence_days) == (n, i, t, 7)
    plan = tpl.phase_plan(n)
    assert [(p.phase, p.first_session, p.last_session) for p in plan] == [
        (Phase.initial, 1, i), (Phase.middle, i + 1, n - t), (Phase.termination, n - t + 1, n)]


def test_ipt_a_parent_joins_the_first_and_the_last_session():
    tpl = T.template("ipt-a")
    kinds = [tpl.kind_for(k, 12) for k in range(1, 13)]
    assert kinds[0] == kinds[-1] == SessionKind.parent
    assert set(kinds[1:-1]) == {SessionKind.individual}
    assert T.template("ipt-group").kind_for(5, 16) == SessionKind.group
    assert T.template("ipt-standard").kind_for(1, 16) == SessionKind.individual


def test_unknown_template():
    with pytest.raises(T.UnknownTemplate):
        T.template("ipt-nope")


def test_template_data_that_leaves_no_middle_phase_is_refused(tmp_path):
    bad = tmp_path / "t.json"
    bad.write_text('{"templates": {"x": {"sessions": 6, "initial": 3, "termination": 3, "cadence_days": 7,'
                   ' "min_sessions": 6, "max_sessions": 6}}}')
    with pytest.raises(T.TemplateError):
        T.load(bad)


def hours(*windows, tz="Europe/London"):
    return WorkingHours.from_weekday_slots(tz, [{"weekday": d, "start": s, "end": e} for d, s, e in windows])


def rules(**kw):
    base = dict(patient=hours((2, "09:00", "12:00"), (4, "14:00", "17:00")),
                clinician=hours(*[(d, "09:00", "17:00") for d in range(1, 6)]))
    return BookingRules(**{**base, **kw})


def test_refusal_names_the_rule_broken():
    r = rules(closures=frozenset({date(2030, 1, 15)}),
              busy=((datetime(2030, 1, 17, 14, 0, tzinfo=LONDON), datetime(2030, 1, 17, 14, 50, tzinfo=LONDON)),))
    assert r.refusal(datetime(2030, 1, 8, 9, 0, tzinfo=LONDON), 50) is None  # Tuesday 09:00
    assert r.refusal(datetime(2030, 1, 8, 11, 30, tzinfo=LONDON), 50) == Refusal.outside_patient_availability  # ends 12:20
    assert r.refusal(datetime(2030, 1, 9, 9, 0, tzinfo=LONDON), 50) == Refusal.outside_patient_availability  # Wednesday
    assert r.refusal(datetime(2030, 1, 15, 9, 0, tzinfo=LONDON), 50) == Refusal.closure_day
    assert r.refusal(datetime(2030, 1, 17, 14, 30, tzinfo=LONDON), 50) == Refusal.clinician_busy
    evening = rules(patient=hours((2, "16:00", "20:00")))
    assert evening.refusal(datetime(2030, 1, 8, 17, 0, tzinfo=LONDON), 50) == Refusal.outside_working_hours


def test_weekly_series_keeps_local_time_across_dst_and_skips_closures_and_busy_slots():
    start = datetime(2030, 3, 1, 0, 0, tzinfo=timezone.utc)
    closure = date(2030, 3, 19)  # a Tuesday: that week's session moves to Thursday
    busy = ((datetime(2030, 4, 2, 9, 0, tzinfo=LONDON), datetime(2030, 4, 2, 9, 50, tzinfo=LONDON)),)
    r = rules(closures=frozenset({closure}), busy=busy)
    starts = r.series(start, 8, 50, 7)
    local = [s.astimezone(LONDON) for s in starts]
    assert local[0] == datetime(2030, 3, 5, 9, 0, tzinfo=LONDON)
    assert all(s.date() != closure for s in local)
    assert local[2] == datetime(2030, 3, 21, 14, 0, tzinfo=LONDON)  # Thursday of the closure week
    assert local[3] == datetime(2030, 3, 26, 9, 0, tzinfo=LONDON)  # back to Tuesday 09:00
    assert local[4].utcoffset() == timedelta(hours=1) and local[0].utcoffset() == timedelta(0)  # BST from 31 March
    assert local[4] == datetime(2030, 4, 2, 10, 0, tzinfo=LONDON)  # 09:00-09:50 taken: next 15-minute step free
    for a, b in zip(starts, starts[1:]):
        assert b >= a + timedelta(minutes=50)


def test_no_bookable_slot_within_the_horizon():
    r = rules(patient=hours((6, "09:00", "12:00")), horizon_days=30)  # Saturdays only; clinician Mon-Fri
    with pytest.raises(NoBookableSlot):
        r.next_start(datetime(2030, 1, 1, tzinfo=timezone.utc), 50)


def test_busy_check_sees_nested_and_overlapping_intervals():
    at = lambda h, m=0: datetime(2030, 1, 8, h, m, tzinfo=LONDON)
    r = rules(busy=((at(9, 30), at(9, 45)), (at(9), at(11))))
    assert r.refusal(at(10), 50) == Refusal.clinician_busy  # inside the long one, after the short one
    assert r.refusal(at(11), 50) is None
    assert r.next_start(at(9), 50) == at(11)


def test_a_full_calendar_pushes_the_first_session_later_not_into_a_double_booking():
    r = rules()
    taken = []
    for _ in range(30):  # 30 courses of 16 weekly sessions for one clinician: 6 slots a week
        starts = BookingRules(patient=r.patient, clinician=r.clinician, busy=tuple(taken)).series(
            datetime(2030, 1, 1, tzinfo=timezone.utc), 16, 50, 7)
        taken += [(s, s + timedelta(minutes=50)) for s in starts]
    taken.sort()
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(taken, taken[1:]))
    assert taken[-1][0] > datetime(2031, 1, 1, tzinfo=timezone.utc)  # well over a year out, still booked
