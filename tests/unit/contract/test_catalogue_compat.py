"""The real catalogue against the committed baseline (what CI runs as
``python -m rapport_tools.contracts.compat``)."""

from __future__ import annotations

import pytest

from rapport_shared.contracts import EVENT_MODELS
from rapport_tools.contracts.compat import PUBLISHED_DIR, check, load_dir, main

pytestmark = pytest.mark.unit


def test_current_models_are_compatible_with_the_published_baseline():
    report = check()
    assert not report.breaking, "breaking change to a published event type (publish a .v2 instead):\n" + \
        "\n".join(map(str, report.breaking))


def test_the_baseline_is_committed_and_covers_the_catalogue_v1():
    published = load_dir(PUBLISHED_DIR)
    assert published, "no baseline: run python -m rapport_tools.contracts.compat --publish"
    required = {"rapport.intake.completed.v1", "rapport.intake.declined.v1", "rapport.course.planned.v1",
                "rapport.course.phase_changed.v1", "rapport.course.ended.v1", "rapport.score.submitted.v1"}
    assert required <= set(published)
    for t, doc in published.items():
        # the URI as published then: a path before the absolute URIs, else envelope.schema_uri(t)
        assert doc["x-cloudevents-type"] == t and doc["$id"].endswith(f"/events/{t}.json")
        assert t in EVENT_MODELS, f"{t} is published but has no model"


def test_the_command_exits_zero_on_the_real_catalogue(capsys):
    assert main(["-q"]) == 0
    assert "OK:" in capsys.readouterr().out
