"""Redrive's target is the topic the DLQ's own name encodes, never the dlq_original_topic header."""

import pytest

from rapport_tools.kafka_ops import DeadLetter, ToolError, redrive_target

pytestmark = pytest.mark.unit


def letter(dlq_topic: str, header_topic: str | None) -> DeadLetter:
    headers = [("ce_id", b"4f6c7a1e-0000-4000-8000-000000000000"), ("dlq_reason", b"handler")]
    if header_topic is not None:
        headers.append(("dlq_original_topic", header_topic.encode()))
    return DeadLetter(dlq_topic, 0, 0, 0, b"k", b"{}", headers)


def test_the_target_comes_from_the_dlq_name():
    d = letter("rapport.intake.dlq.rapport-scheduler", "rapport.private.contacts")
    assert d.original_topic == "rapport.intake" and d.header_disagrees
    same = letter("rapport.intake.dlq.rapport-scheduler", "rapport.intake")
    assert same.original_topic == "rapport.intake" and not same.header_disagrees
    assert not letter("rapport.course.dlq.rapport-notifier", None).header_disagrees


@pytest.mark.parametrize("dlq,target", [
    ("rapport.intake.dlq.rapport-scheduler", "rapport.intake"),
    ("sandbox.x.dlq.g", "sandbox.x"),
])
def test_redrive_target(dlq, target):
    assert redrive_target(dlq) == target


@pytest.mark.parametrize("dlq", ["rapport.intake", "__consumer_offsets.dlq.g", "rapport.private.contacts.dlq.g",
                                 "rapport.tools.redrive.dlq.g", "a.dlq.b.dlq.c"])
def test_redrive_refuses_targets_no_record_may_go_to(dlq):
    with pytest.raises(ToolError):
        redrive_target(dlq)
