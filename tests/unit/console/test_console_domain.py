"""The console's pure parts: caseload order, latest scores and change since baseline, the phase
timeline, chart geometry, cohort rates, CSRF tokens, and the settings production refuses."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

from rapport_console.domain import charts, cohort, model
from rapport_console.entrypoints.session import SessionKeys
from rapport_console.settings import ConsoleSettings

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)


def ep(**kw):
    base = {"episode_id": uuid.uuid4(), "phase": "middle", "template_id": "ipt-standard", "course_template_id": None,
            "focus_primary": "grief", "ended_at": None}
    return {**base, **kw}


def sc(episode, instrument, total, days, *, baseline=None, band="moderate", reliable=None):
    return {"episode_id": episode, "submission_id": uuid.uuid4(), "instrument": instrument, "total": total,
            "band": band, "caseness": total >= 10, "administered_at": T0 + timedelta(days=days),
            "baseline_total": baseline, "change_from_baseline": None if baseline is None else total - baseline,
            "reliable_change": reliable}


def test_caseload_lists_open_alerts_first_urgent_before_routine_then_by_next_session():
    calm_soon, calm_late, routine, urgent, ended = ep(), ep(), ep(), ep(), ep(ended_at=T0)
    sessions = [{"episode_id": calm_soon["episode_id"], "status": "scheduled", "starts_at": T0 + timedelta(days=1), "number": 2},
                {"episode_id": calm_late["episode_id"], "status": "scheduled", "starts_at": T0 + timedelta(days=5), "number": 2},
                {"episode_id": calm_late["episode_id"], "status": "attended", "starts_at": T0 - timedelta(days=2), "number": 1}]
    alerts = [{"episode_id": routine["episode_id"], "urgency": "routine", "resolved_at": None},
              {"episode_id": urgent["episode_id"], "urgency": "urgent", "resolved_at": None},
              {"episode_id": calm_soon["episode_id"], "urgency": "urgent", "resolved_at": T0}]
    rows = model.caseload([ended, calm_late, routine, calm_soon, urgent], sessions, [], alerts, T0)
    assert [r.episode_id for r in rows] == [urgent["episode_id"], routine["episode_id"], calm_soon["episode_id"],
                                            calm_late["episode_id"], ended["episode_id"]]
    assert rows[0].urgent_alerts == 1 and rows[2].open_alerts == 0
    assert rows[3].next_session == T0 + timedelta(days=5) and rows[3].next_session_number == 2


def test_latest_score_carries_its_band_and_change_since_baseline():
    e = uuid.uuid4()
    latest = model.latest_scores([sc(e, "phq9", 18, 0, band="moderately_severe"), sc(e, "phq9", 9, 14, baseline=18,
                                                                                  reliable="improved"),
                                  sc(e, "gad7", 12, 1), sc(e, "wsas", 20, 1)])
    assert set(latest) == {"phq9", "gad7"}
    assert (latest["phq9"].total, latest["phq9"].band, latest["phq9"].change, latest["phq9"].reliable_change) == (
        9, "moderate", -9, "improved")
    assert latest["gad7"].change is None  # one score: no change yet


def test_phase_starts_follow_the_plan_as_corrected_by_phase_changes():
    plan = [{"phase": "initial", "first_session": 1, "last_session": 3},
            {"phase": "middle", "first_session": 4, "last_session": 12},
            {"phase": "termination", "first_session": 13, "last_session": 16}]
    sessions = [{"number": n, "starts_at": T0 + timedelta(weeks=n - 1), "status": "scheduled", "phase": None}
                for n in range(1, 17)]
    changes = [{"effective_from_session": 3, "to_phase": "middle", "changed_at": T0 + timedelta(weeks=1, hours=2)},
               {"effective_from_session": 10, "to_phase": "ended_early", "changed_at": T0 + timedelta(weeks=8)}]
    starts = model.phase_starts(plan, changes, sessions)
    assert [(s.phase, s.first_session) for s in starts] == [("initial", 1), ("middle", 3), ("ended_early", 10)]
    assert starts[1].at == T0 + timedelta(weeks=2)  # the time of session 3
    blocks = model.timeline(starts, sessions)
    assert [(b.phase, [s["number"] for s in b.sessions][:3]) for b in blocks][:2] == [("initial", [1, 2]),
                                                                                        ("middle", [3, 4, 5])]


def test_trend_chart_puts_every_point_in_order_with_caseness_line_band_and_boundaries():
    scale = charts.Scale(code="phq9", name="PHQ-9", low=0, high=27, caseness=10, reliable_change=6,
                         bands=(("minimal", 0), ("mild", 5), ("moderate", 10)))
    pts = [(T0 + timedelta(days=d), total, None, None, "session") for d, total in ((14, 12), (0, 18), (28, 7))]
    chart = charts.trend(scale, pts, [("initial", T0), ("middle", T0 + timedelta(days=10))])
    assert [p.total for p in chart.points] == [18, 12, 7]  # time order
    assert chart.points[0].x < chart.points[1].x < chart.points[2].x
    # higher totals are higher up (smaller y); the band is baseline ± 6 = 12..24
    assert chart.points[0].y < chart.points[1].y < chart.points[2].y
    y = lambda v: chart.bottom - (chart.bottom - chart.top) * v / 27  # noqa: E731
    assert chart.caseness_y == pytest.approx(y(10), abs=0.1)
    assert (chart.band_top, chart.band_bottom) == (pytest.approx(y(24), abs=0.1), pytest.approx(y(12), abs=0.1))
    assert [b.phase for b in chart.boundaries] == ["middle"]
    assert chart.points[0].x < chart.boundaries[0].x < chart.points[1].x
    single = charts.trend(scale, [(T0, 30, None, None, "baseline")])
    assert single.points[0].y == chart.top  # clipped to the range, never drawn outside


def test_cohort_rates_use_outcomes_definitions():
    rows = [
        {"template": "ipt-standard", "condition": "depression", "finished_course": True, "counts_toward_recovery": True,
         "recovery": True, "reliable_improvement": True, "reliable_recovery": True, "reliable_deterioration": False},
        {"template": "ipt-standard", "condition": "depression", "finished_course": True, "counts_toward_recovery": False,
         "recovery": None, "reliable_improvement": False, "reliable_recovery": None, "reliable_deterioration": True},
        {"template": "ipt-brief", "condition": "anxiety", "finished_course": False, "counts_toward_recovery": True,
         "recovery": False, "reliable_improvement": None, "reliable_recovery": None, "reliable_deterioration": None},
    ]
    total = cohort.summarise("all", rows)
    rates = {r.metric: (r.count, r.denominator) for r in total.rates}
    assert (total.ended, total.finished) == (3, 2)
    assert rates == {"recovery": (1, 1), "reliable_improvement": (1, 2), "reliable_recovery": (1, 1),
                     "reliable_deterioration": (1, 2)}
    brief = cohort.by(rows, "template")[0]
    assert brief.key == "ipt-brief" and all(r.rate is None for r in brief.rates)  # not determinable, not 0 %


def test_csrf_tokens_are_bound_to_the_session_and_the_key():
    keys = SessionKeys("k1")
    assert keys.csrf("token-a") == SessionKeys("k1").csrf("token-a")
    assert keys.csrf("token-a") != keys.csrf("token-b") != SessionKeys("k2").csrf("token-b")
    assert keys.pre_csrf("x") != keys.csrf("x")
    assert SessionKeys.matches(keys.csrf("t"), keys.csrf("t")) and not SessionKeys.matches(keys.csrf("t"), None)


def test_production_refuses_an_insecure_cookie_pasted_tokens_and_no_session_secret(monkeypatch, tmp_path):
    monkeypatch.delenv("RAPPORT_CRASH_AT", raising=False)
    jwks = tmp_path / "jwks.json"
    jwks.write_text('{"keys": []}')
    base = dict(environment="production", auth_jwks=str(jwks), kafka_security_protocol="SASL_SSL",
                kafka_sasl_username="console", database_dsn="postgresql://u:p@db/rapport?sslmode=verify-full")
    for bad, words in (({"cookie_secure": False, "sign_in": "oidc"}, "COOKIE_SECURE"),
                       ({"sign_in": "token"}, "SIGN_IN=token"),
                       ({"sign_in": "oidc", "oidc_issuer": "http://idp"}, "RAPPORT_OIDC_ISSUER")):
        good = dict(session_secret="s", oidc_client_id="c", oidc_redirect_uri="https://c/cb", oidc_issuer="https://idp")
        with pytest.raises(ValueError, match=words):
            ConsoleSettings(**{**base, **good, **bad})
    with pytest.raises(ValueError, match="SESSION_SECRET"):
        ConsoleSettings(**base, sign_in="oidc", oidc_issuer="https://idp", oidc_client_id="c",
                        oidc_redirect_uri="https://c/cb")
    ok = ConsoleSettings(**base, sign_in="oidc", oidc_issuer="https://idp", oidc_client_id="c",
                         oidc_redirect_uri="https://c/cb", session_secret="s")
    assert ok.cookie_secure
