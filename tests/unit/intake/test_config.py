"""Intake's configuration: rules as data, checked when the service is built."""

import json

import pytest

from rapport_intake.bootstrap import build
from rapport_intake.domain.rules import DEFAULT_RULES, load_rules
from rapport_intake.settings import IntakeSettings

pytestmark = pytest.mark.unit


def test_the_default_rules_hold_the_domain_templates_and_exclusions():
    rules = load_rules()
    assert list(rules.templates) == ["ipt-standard", "ipt-12", "ipt-brief", "ipt-a", "ipt-group", "ipt-ed"]
    assert rules.templates["ipt-a"].age.min == 12 and rules.templates["ipt-a"].age.max == 18
    assert [e.code for e in rules.exclusions] == ["active_psychosis", "acute_risk_crisis_care", "bipolar_disorder",
                                                  "active_substance_misuse"]


def test_the_template_ids_are_the_schedulers():
    # The scheduler plans from its own template data; intake must never offer one it lacks.
    raw = json.loads((DEFAULT_RULES.parents[3] / "scheduler/rapport_scheduler/domain/templates.json").read_text())
    scheduler = {k for k in raw.get("templates", raw) if not k.startswith("_")}
    assert set(load_rules().templates) <= scheduler


def test_a_clinic_can_supply_its_own_rules(tmp_path):
    data = json.loads(DEFAULT_RULES.read_text())
    data["decline_reasons"].append("moved_away")
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(data))
    app = build(IntakeSettings(intake_rules_path=str(path)))
    assert "moved_away" in app.state.runtime.settings.rules().decline_reasons


def test_rules_naming_an_unknown_instrument_are_refused_at_start(tmp_path):
    data = json.loads(DEFAULT_RULES.read_text())
    data["required_baseline"]["anxiety"] = ["gad7", "pswq"]
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="pswq"):
        build(IntakeSettings(intake_rules_path=str(path)))


def test_session_length_and_secondary_focus_are_settings(monkeypatch):
    monkeypatch.setenv("RAPPORT_SESSION_MINUTES", "60")
    monkeypatch.setenv("RAPPORT_ALLOW_SECONDARY_FOCUS", "false")
    cfg = build(IntakeSettings()).state.runtime.settings
    assert (cfg.session_minutes, cfg.allow_secondary_focus) == (60, False)
