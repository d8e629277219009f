"""Issue 15 item 4: the FHIR R4 record of a finished episode (domain.md 5), built through the
handlers from the events outcomes consumes, validated against the fhir.resources models (R4B: the
same structure as R4 for every resource type used here) with reference integrity inside the
Bundle, the required bindings, and the invariants the models do not check.

The official HL7 validator is not run here: it needs the R4 core package from packages.fhir.org,
which this environment cannot reach (docs/outcomes.md "FHIR R4 export").
"""

from __future__ import annotations

import importlib
import json
import os
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterator

import pytest
from outcomes_fakes import FakeOutcomes

from rapport_outcomes.domain import fhir_record
from rapport_outcomes.domain.commands import Actor, SubmitQuestionnaire, SubmitScores
from rapport_outcomes.service_layer import views
from rapport_shared.contracts import IntakeCompletedV1
from rapport_shared.contracts.course import (
    CourseChecklistUpdatedV1,
    CourseEndedV1,
    CoursePlannedV1,
    SessionAttendedV1,
    SessionCancelledV1,
    SessionMissedV1,
    SessionRescheduledV1,
    SessionScheduledV1,
)
from rapport_shared.contracts.notifications import NotificationDeliveredV1, NotificationFailedV1
from rapport_shared.contracts.outcomes import AlertRaisedV1
from rapport_shared.instruments import load_catalogue

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
CLINICIAN = "clin-1"
# Required bindings (FHIR R4) of the statuses and codes this export sets.
REQUIRED = {
    "Bundle.type": {"document", "message", "transaction", "transaction-response", "batch", "batch-response",
                    "history", "searchset", "collection"},
    "EpisodeOfCare.status": {"planned", "waitlist", "active", "onhold", "finished", "cancelled", "entered-in-error"},
    "CarePlan.status": {"draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown"},
    "CarePlan.intent": {"proposal", "plan", "order", "option"},
    "Goal.lifecycleStatus": {"proposed", "planned", "accepted", "active", "on-hold", "completed", "cancelled",
                             "entered-in-error", "rejected"},
    "Appointment.status": {"proposed", "pending", "booked", "arrived", "fulfilled", "cancelled", "noshow",
                           "entered-in-error", "checked-in", "waitlist"},
    "Encounter.status": {"planned", "arrived", "triaged", "in-progress", "onleave", "finished", "cancelled",
                         "entered-in-error", "unknown"},
    "Observation.status": {"registered", "preliminary", "final", "amended", "corrected", "cancelled",
                           "entered-in-error", "unknown"},
    "QuestionnaireResponse.status": {"in-progress", "completed", "amended", "entered-in-error", "stopped"},
    "CodeSystem.status": {"draft", "active", "retired", "unknown"},
    "Communication.status": {"preparation", "in-progress", "not-done", "on-hold", "stopped", "completed",
                             "entered-in-error", "unknown"},
    "CodeSystem.content": {"not-present", "example", "fragment", "complete", "supplement"},
}
ACTIVITY_STATUS = {"not-started", "scheduled", "in-progress", "on-hold", "completed", "cancelled", "stopped",
                   "unknown", "entered-in-error"}
PARTICIPANT_STATUS = {"accepted", "declined", "tentative", "needs-action"}
# Nothing that could carry a person's identity or contact details.
CONTACT_ELEMENTS = {"name", "telecom", "address", "birthDate", "contact", "photo"}


def model(resource_type: str):
    module = importlib.import_module(f"fhir.resources.R4B.{resource_type.lower()}")
    return getattr(module, resource_type)


def phq9(total: int) -> dict[str, int]:
    """PHQ-9 answers adding up to ``total`` with item 9 at 0."""
    out, left = {}, total
    for n in range(1, 9):
        out[str(n)] = min(3, left)
        left -= out[str(n)]
    return {**out, "9": 0}


def flat(code: str, value: int) -> dict[str, int]:
    return {str(i.number): min(value, i.highest) for i in load_catalogue().get(code).items}


# ---- a finished course, through the handlers --------------------------------------------------

async def finished_episode(condition: str = "depression", *, item9: int = 1) -> tuple[FakeOutcomes, IntakeCompletedV1]:
    fake = FakeOutcomes()
    now = fake.clock.now()
    referred = now - timedelta(days=60)
    baseline = {"phq9": phq9(18), "gad7": flat("gad7", 2)}
    if condition == "eating_disorder":
        baseline["edeq6"] = flat("edeq6", 5)
    data = IntakeCompletedV1(
        episode_id=uuid.uuid4(), person_id="P-7f3a9c0d1e", target_condition=condition, template_id="ipt-brief",
        focus={"primary": "grief", "secondary": "role_transition"}, clinician_id=CLINICIAN,
        availability={"timezone": "Europe/London", "slots": [{"weekday": 2, "start": "09:00", "end": "12:00"}]},
        baseline_scores=[{"instrument": c, "answers": a, "total": 0.0, "administered_at": referred + timedelta(hours=1)}
                         for c, a in baseline.items()],
        referred_at=referred, completed_at=referred + timedelta(hours=2), organisation_id="org-test")
    await fake.deliver(data)
    course_id = uuid.uuid4()
    first = referred + timedelta(days=7)
    sessions = [{"session_id": uuid.uuid4(), "number": n, "starts_at": first + timedelta(weeks=n - 1),
                 "duration_minutes": 50} for n in range(1, 5)]
    plan = [{"phase": "initial", "first_session": 1, "last_session": 1},
            {"phase": "middle", "first_session": 2, "last_session": 3},
            {"phase": "termination", "first_session": 4, "last_session": 4}]
    common = dict(episode_id=data.episode_id, course_id=course_id)
    await fake.deliver(CoursePlannedV1(
        **common, person_id=data.person_id, template_id="ipt-brief", clinician_id=CLINICIAN, contracted_sessions=4,
        phase_plan=plan, sessions=sessions, first_session_at=first, planned_end_at=first + timedelta(weeks=4),
        planned_at=referred + timedelta(days=1), focus={"primary": "grief"}))
    await fake.deliver(CourseChecklistUpdatedV1(
        **common, item="focus_confirmed", session_number=1, focus={"primary": "grief"}, checklist_complete=False,
        recorded_at=first + timedelta(hours=1)))
    s = {n: sessions[n - 1]["session_id"] for n in range(1, 5)}
    attended = 0

    async def attend(n: int, phase: str) -> None:
        nonlocal attended
        attended += 1
        await fake.deliver(SessionAttendedV1(**common, session_id=s[n], number=n, attended_sessions=attended,
                                             contracted_sessions=4, phase=phase,
                                             attended_at=first + timedelta(weeks=n - 1, minutes=50)))

    await attend(1, "initial")
    await attend(2, "middle")
    # Session 3 moved, then missed; a replacement session 5 is booked and attended in its place.
    await fake.deliver(SessionRescheduledV1(**common, session_id=s[3], number=3, previous_starts_at=sessions[2]["starts_at"],
                                            starts_at=sessions[2]["starts_at"] + timedelta(days=1), reason_code="clinic",
                                            rescheduled_at=first))
    await fake.deliver(SessionMissedV1(**common, session_id=s[3], number=3, consecutive_missed=1,
                                       missed_at=sessions[2]["starts_at"] + timedelta(days=1, hours=1)))
    extra = uuid.uuid4()
    await fake.deliver(SessionScheduledV1(**common, session_id=extra, number=5, starts_at=first + timedelta(weeks=5),
                                          duration_minutes=50, kind="individual", scheduled_at=first))
    await fake.deliver(SessionAttendedV1(**common, session_id=extra, number=5, attended_sessions=3,
                                         contracted_sessions=4, phase="middle",
                                         attended_at=first + timedelta(weeks=5, minutes=50)))
    await attend(4, "termination")
    await fake.deliver(SessionCancelledV1(**common, session_id=uuid.uuid4(), number=6, cancelled_by="clinic",
                                          reason_code="clinic", cancelled_at=first))

    actor = Actor(data.person_id, frozenset({"patient_app"}))
    at = now - timedelta(hours=3)
    for code, answers in (("phq9", {**phq9(4), "9": item9}), ("gad7", flat("gad7", 0)),
                          *((("edeq6", flat("edeq6", 1)),) if condition == "eating_disorder" else ())):
        await fake.handle(SubmitQuestionnaire(episode_id=data.episode_id, actor=actor, scores=SubmitScores(
            client_submission_id=f"app-{code}", instrument=code, answers=answers, administered_at=at,
            timepoint="end", session_number=4)))
    await fake.deliver(CourseEndedV1(**common, template_id="ipt-brief", clinician_id=CLINICIAN, reason="completed",
                                     final_phase="completed", attended_sessions=4, contracted_sessions=4,
                                     ended_at=now - timedelta(hours=1)))
    return fake, data


async def export(fake: FakeOutcomes, data: IntakeCompletedV1, *, answers: bool = True) -> dict:
    return await views.fhir_bundle(fake.unit(), data.episode_id, answers=answers, content="episode")


# ---- checks ----------------------------------------------------------------------------------

def walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield f"{path}.{key}", value
            yield from walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for value in node:
            yield from walk(value, path)


def validate(bundle: dict) -> dict[str, list[dict]]:
    """Validate the Bundle and every resource; check references resolve inside it and the
    required bindings and invariants hold. Returns the resources by type."""
    model("Bundle").model_validate(bundle)
    urls = [e["fullUrl"] for e in bundle["entry"]]
    assert len(urls) == len(set(urls)), "every fullUrl once"
    by_type: dict[str, list[dict]] = {}
    for entry in bundle["entry"]:
        resource = entry["resource"]
        kind = resource["resourceType"]
        model(kind).model_validate(resource)  # raises, naming the element, if invalid
        assert entry["fullUrl"] == f"urn:uuid:{resource['id']}"
        by_type.setdefault(kind, []).append(resource)
        for element, values in REQUIRED.items():
            owner, name = element.split(".")
            if owner == kind and name in resource:
                assert resource[name] in values, (element, resource[name])
        if kind != "CodeSystem":  # its `name` is the code system's computer name
            assert not CONTACT_ELEMENTS & {p.rsplit(".", 1)[-1] for p, _ in walk(resource)}, kind
    assert bundle["type"] in REQUIRED["Bundle.type"]
    for path, value in walk(bundle):
        if path.endswith(".reference") and isinstance(value, str):
            assert value in urls, f"{path} = {value} does not resolve inside the Bundle"
    for plan in by_type.get("CarePlan", []):
        for activity in plan.get("activity", []):
            assert not ("reference" in activity and "detail" in activity)  # cpl-3
            if "detail" in activity:
                assert activity["detail"]["status"] in ACTIVITY_STATUS
    for appointment in by_type.get("Appointment", []):
        assert ("start" in appointment) == ("end" in appointment)  # app-2
        assert all(p["status"] in PARTICIPANT_STATUS for p in appointment["participant"])
    for observation in by_type.get("Observation", []):
        for part in [observation, *observation.get("component", [])]:
            has_value = any(k.startswith("value") for k in part)
            assert not (has_value and "dataAbsentReason" in part)  # obs-6
            assert has_value or "dataAbsentReason" in part or part is observation
    return by_type


def codes(concept: dict) -> set[tuple[str, str]]:
    return {(c["system"], c["code"]) for c in concept.get("coding", [])}


# ---- tests -----------------------------------------------------------------------------------

async def test_a_finished_episode_exports_the_whole_record_and_validates() -> None:
    fake, data = await finished_episode()
    by_type = validate(await export(fake, data))

    assert {k: len(v) for k, v in by_type.items()} == {
        "CodeSystem": 2, "EpisodeOfCare": 1, "Condition": 1, "Goal": 1, "CarePlan": 4, "Appointment": 5,
        "Encounter": 4, "QuestionnaireResponse": 4, "Observation": 4 + 2 + 2 + 1}  # totals, item 9, changes, outcome
    [episode] = by_type["EpisodeOfCare"]
    assert episode["status"] == "finished" and episode["patient"]["identifier"]["value"] == data.person_id
    assert episode["managingOrganization"]["identifier"]["value"] == "org-test"
    [condition] = by_type["Condition"]
    assert codes(condition["code"]) == {("http://snomed.info/sct", "35489007")}

    # The focus problem area: the CodeSystem shipped, the Goal coded in it. Intake's secondary area
    # is gone: the course confirmed the focus as grief alone.
    problem_areas = next(c for c in by_type["CodeSystem"] if c["url"].endswith("ipt-problem-area"))
    assert [c["code"] for c in problem_areas["concept"]] == ["grief", "role_dispute", "role_transition",
                                                            "interpersonal_deficits"]
    [goal] = by_type["Goal"]
    assert goal["priority"]["coding"][0]["code"] == "high-priority"
    assert codes(goal["description"]) == {(problem_areas["url"], "grief")} and goal["lifecycleStatus"] == "completed"

    # The course and its phases, the sessions as activities.
    course = next(p for p in by_type["CarePlan"] if "partOf" not in p)
    phases = {p["title"]: p for p in by_type["CarePlan"] if "partOf" in p}
    assert course["status"] == "completed" and sorted(phases) == ["Initial phase", "Middle phase", "Termination phase"]
    # Session 6 was cancelled before it had a time: no Appointment, an activity on the course.
    [unplaced] = course["activity"]
    assert unplaced["detail"] == {"kind": "Appointment", "status": "cancelled", "description": "IPT session 6"}
    middle = phases["Middle phase"]
    assert len(middle["activity"]) == 3 and middle["status"] == "completed"  # sessions 2, 3 (missed), 5
    appointments = {a["id"]: a for a in by_type["Appointment"]}
    statuses = sorted(a["status"] for a in appointments.values())
    assert statuses == ["fulfilled", "fulfilled", "fulfilled", "fulfilled", "noshow"]
    missed = next(a for a in appointments.values() if a["status"] == "noshow")
    [row3] = [r for r in fake.tables.sessions.values() if r["number"] == 3]
    assert (missed["start"], missed["minutesDuration"]) == (row3["starts_at"].strftime("%Y-%m-%dT%H:%M:%SZ"), 50)
    assert row3["starts_at"].weekday() != next(
        r for r in fake.tables.sessions.values() if r["number"] == 2)["starts_at"].weekday()  # the rescheduled time
    assert all(e["status"] == "finished" and e["class"]["code"] == "AMB" for e in by_type["Encounter"])

    # Observations: totals, item 9 (LOINC 44260-8, with its flag), change per instrument, the outcome.
    obs = by_type["Observation"]
    item9 = [o for o in obs if ("http://loinc.org", "44260-8") in codes(o["code"])]
    assert [o["valueInteger"] for o in item9] == [0, 1]
    assert item9[1]["interpretation"][0]["coding"][0]["code"] == "safety_item_positive"
    changes = {o["component"][0]["valueCodeableConcept"]["coding"][0]["code"]: o for o in obs
               if o["code"]["coding"][0]["code"] == "reliable-change"}
    assert sorted(changes) == ["44261-6", "70274-6"]
    assert changes["44261-6"]["valueCodeableConcept"]["coding"][0]["code"] == "improved"
    [outcome] = [o for o in obs if o["code"]["coding"][0]["code"] == "end-of-course-outcome"]
    recovery = next(c for c in outcome["component"] if c["code"]["coding"][0]["code"] == "recovery")
    assert recovery["valueBoolean"] is True and len(outcome["hasMember"]) == 2


async def test_the_partners_record_holds_no_answers() -> None:
    fake, data = await finished_episode()
    bundle = await export(fake, data, answers=False)
    by_type = validate(bundle)
    assert "QuestionnaireResponse" not in by_type
    text = json.dumps(bundle)
    assert "44260-8" not in text and "linkId" not in text and '"answer"' not in text
    assert {"EpisodeOfCare", "Condition", "Goal", "CarePlan", "Appointment", "Encounter"} <= set(by_type)


async def test_an_eating_disorder_episode_says_no_reliable_change_criterion_for_edeq() -> None:
    fake, data = await finished_episode("eating_disorder", item9=0)
    by_type = validate(await export(fake, data))
    [condition] = by_type["Condition"]
    assert codes(condition["code"]) == {("http://snomed.info/sct", "72366004")}
    edeq = next(o for o in by_type["Observation"] if o["code"].get("text") == "EDE-Q 6.0 reliable change from baseline")
    assert edeq["valueCodeableConcept"]["coding"][0]["code"] == "no-criterion"
    assert edeq["valueCodeableConcept"]["text"].startswith("no reliable-change criterion")
    parts = {c["code"]["coding"][0]["code"]: c for c in edeq["component"]}
    assert parts["measure-role"]["valueCodeableConcept"]["coding"][0]["code"] == "condition-measure"
    assert parts["criterion"]["valueCodeableConcept"]["coding"][0]["code"] == "criterion-none"
    assert parts["change"]["valueQuantity"]["value"] == -4 and "threshold" not in parts


@pytest.mark.parametrize(("condition", "coded"), [("anxiety", "197480006"), ("substance_use", None)])
async def test_the_condition_is_snomed_coded_only_where_a_checked_code_exists(condition: str, coded: str | None) -> None:
    fake = FakeOutcomes()
    data = IntakeCompletedV1(
        episode_id=uuid.uuid4(), person_id="P-1", target_condition=condition, template_id="ipt-standard",
        focus={"primary": "interpersonal_deficits"}, clinician_id=CLINICIAN,
        availability={"timezone": "Europe/London", "slots": [{"weekday": 2, "start": "09:00", "end": "12:00"}]},
        referred_at=fake.clock.now() - timedelta(days=1), completed_at=fake.clock.now(), organisation_id="org-test")
    await fake.deliver(data)
    by_type = validate(await export(fake, data))
    [condition_resource] = by_type["Condition"]
    assert codes(condition_resource["code"]) == ({("http://snomed.info/sct", coded)} if coded else set())
    assert condition_resource["code"]["text"].endswith("(the programme's target condition)")
    # Before a course is planned: an episode, its condition and the provisional focus, no plan.
    [episode] = by_type["EpisodeOfCare"]
    [goal] = by_type["Goal"]
    assert (episode["status"], goal["lifecycleStatus"], "CarePlan" in by_type) == ("planned", "proposed", False)


async def test_the_results_view_is_unchanged_by_default() -> None:
    fake, data = await finished_episode()
    bundle = await views.fhir_bundle(fake.unit(), data.episode_id, answers=True)
    assert {e["resource"]["resourceType"] for e in bundle["entry"]} == {"QuestionnaireResponse", "Observation"}


def test_the_published_code_systems_are_current() -> None:
    """docs/fhir/ holds the code systems the Bundle ships; RAPPORT_UPDATE_FHIR_DOCS=1 rewrites them."""
    for system in fhir_record.code_systems():
        path = ROOT / "docs" / "fhir" / f"CodeSystem-{system['url'].rsplit('/', 1)[-1]}.json"
        text = json.dumps(system, indent=2, ensure_ascii=False) + "\n"
        if os.environ.get("RAPPORT_UPDATE_FHIR_DOCS") == "1":
            path.parent.mkdir(exist_ok=True)
            path.write_text(text, encoding="utf-8")
        assert path.read_text(encoding="utf-8") == text, f"{path.name} is stale: RAPPORT_UPDATE_FHIR_DOCS=1"
        model("CodeSystem").model_validate(system)


@pytest.mark.skipif("optional_parent_session" not in SessionAttendedV1.model_fields,
                    reason="the session events carry no optional_parent_session yet")
async def test_an_optional_parent_session_is_its_own_appointment_and_encounter() -> None:
    fake, data = await finished_episode()
    course_id = fake.tables.courses[data.episode_id]["course_id"]
    parent, at = uuid.uuid4(), fake.clock.now() - timedelta(days=20)
    common = dict(episode_id=data.episode_id, course_id=course_id, session_id=parent, number=2,
                  optional_parent_session=True)
    await fake.deliver(SessionScheduledV1(**common, starts_at=at, duration_minutes=50, kind="parent", scheduled_at=at))
    await fake.deliver(SessionAttendedV1(**common, attended_sessions=2, contracted_sessions=4, phase="middle",
                                         attended_at=at + timedelta(minutes=50)))
    by_type = validate(await export(fake, data))
    [encounter] = [e for e in by_type["Encounter"] if e["identifier"][0]["value"] == str(parent)]
    assert encounter["type"][0]["text"] == "IPT-A optional parent session (after session 2) (middle phase)"
    assert encounter["type"][0]["coding"][0]["code"] == "parent"
    [appointment] = [a for a in by_type["Appointment"] if a["id"] == str(parent)]
    assert appointment["status"] == "fulfilled"


# ---- Communications: the notifier's deliveries (rapport.notifications) ----------------------------

def delivered(data: IntakeCompletedV1, kind: str, recipient: str, channel: str, cause: str, at) -> NotificationDeliveredV1:
    return NotificationDeliveredV1(episode_id=data.episode_id, notification_id=uuid.uuid4(), kind=kind,
                                   recipient_ref=recipient, channel=channel, cause_event_id=cause, delivered_at=at,
                                   organisation_id="org-test")


async def with_deliveries(fake: FakeOutcomes, data: IntakeCompletedV1) -> dict[str, uuid.UUID]:
    """A reminder of session 2, a safety page, the course-planned notice, the course summary and a
    questionnaire request that failed; returns their notification ids by kind."""
    [planned] = {e for e, _, _ in fake.tables.session_events if sum(x[0] == e for x in fake.tables.session_events) > 1}
    [raised] = [e for e in fake.events if e.type == AlertRaisedV1.event_type and e.data["kind"] == "safety"]
    evaluation = fake.tables.evaluations[data.episode_id]["event_id"]
    session2 = next(r for r in fake.tables.sessions.values() if r["number"] == 2)
    patient, clinician = f"patient:{data.person_id}", f"clinician:{CLINICIAN}"
    messages = [
        delivered(data, "session_reminder", patient, "email", planned, session2["starts_at"] - timedelta(days=1)),
        delivered(data, "safety_alert", clinician, "sms", raised.id, fake.clock.now() - timedelta(hours=2)),
        delivered(data, "course_planned", clinician, "log", planned, session2["starts_at"] - timedelta(days=14)),
        delivered(data, "course_summary", clinician, "email", evaluation, fake.clock.now()),
        NotificationFailedV1(episode_id=data.episode_id, notification_id=uuid.uuid4(), kind="questionnaire_request",
                             recipient_ref=patient, channel="sms", cause_event_id=planned,
                             error_code="no_contact_or_consent", attempts=1,
                             failed_at=session2["starts_at"] - timedelta(days=3), organisation_id="org-test"),
    ]
    for m in messages:
        await fake.deliver(m)
    return {m.kind: m.notification_id for m in messages}


async def test_a_delivery_is_stored_as_its_facts_with_the_recipient_role_only() -> None:
    fake, data = await finished_episode()
    ids = await with_deliveries(fake, data)
    row = fake.tables.communications[ids["session_reminder"]]
    assert (row["kind"], row["channel"], row["recipient_role"], row["status"]) == (
        "session_reminder", "email", "patient", "delivered")
    assert data.person_id not in json.dumps(list(fake.tables.communications.values()), default=str)  # role, no id
    failed = fake.tables.communications[ids["questionnaire_request"]]
    assert (failed["status"], failed["error_code"], failed["attempts"]) == ("failed", "no_contact_or_consent", 1)
    # A notification finishes once: a failure re-sent after the delivery never undoes it.
    again = NotificationFailedV1(episode_id=data.episode_id, notification_id=ids["session_reminder"],
                                 kind="session_reminder", recipient_ref=f"patient:{data.person_id}", channel="email",
                                 cause_event_id=uuid.uuid4(), error_code="timeout", attempts=3,
                                 failed_at=fake.clock.now())
    await fake.deliver(again)
    assert fake.tables.communications[ids["session_reminder"]]["status"] == "delivered"


async def test_each_delivery_is_a_communication_linked_inside_the_bundle() -> None:
    fake, data = await finished_episode()
    ids = await with_deliveries(fake, data)
    bundle = await export(fake, data)
    by_type = validate(bundle)
    systems = {c["url"].rsplit("/", 1)[-1]: c for c in by_type["CodeSystem"]}
    assert sorted(systems) == ["ipt-problem-area", "notification-channel", "notification-kind", "outcome"]
    comms = {c["identifier"][0]["value"]: c for c in by_type["Communication"]}
    assert len(comms) == 5
    full = {e["resource"]["id"]: e["resource"] for e in bundle["entry"]}

    def target(ref: dict) -> dict:
        return full[ref["reference"].removeprefix("urn:uuid:")]

    for c in comms.values():
        assert c["subject"] == {"identifier": {"system": "urn:rapport:fhir/person", "value": data.person_id}}
        assert "payload" not in c and c["extension"][0]["valueReference"]["reference"].startswith("urn:uuid:")
        [category] = c["category"]
        assert category["coding"][0]["system"] == systems["notification-kind"]["url"]
        assert category["coding"][0]["code"] in {x["code"] for x in systems["notification-kind"]["concept"]}
        assert c["medium"][0]["coding"][0]["code"] in {x["code"] for x in systems["notification-channel"]["concept"]}

    reminder = comms[str(ids["session_reminder"])]
    assert reminder["status"] == "completed" and reminder["recipient"] == [
        {"type": "Patient", "identifier": {"system": "urn:rapport:fhir/person", "value": data.person_id}}]
    # Caused by the course plan (every session): the session it reminded of is the next one to start.
    [appointment] = [target(a) for a in reminder["about"]]
    encounter = target(reminder["encounter"])
    assert appointment["resourceType"] == "Appointment" and encounter["resourceType"] == "Encounter"
    assert encounter["appointment"] == [{"reference": f"urn:uuid:{appointment['id']}"}]
    session2 = next(r for r in fake.tables.sessions.values() if r["number"] == 2)
    assert appointment["id"] == str(session2["session_id"])

    page = comms[str(ids["safety_alert"])]
    [score] = [target(a) for a in page["about"]]  # the PHQ-9 total that raised the alert
    assert score["resourceType"] == "Observation" and ("http://loinc.org", "44261-6") in codes(score["code"])
    assert page["recipient"] == [{"type": "Practitioner", "display": "the episode's clinician"}]
    assert page["medium"][0]["coding"][0]["code"] == "sms"
    [course] = [target(a) for a in comms[str(ids["course_planned"])]["about"]]
    assert course["resourceType"] == "CarePlan" and "partOf" not in course
    [outcome] = [target(a) for a in comms[str(ids["course_summary"])]["about"]]
    assert outcome["code"]["coding"][0]["code"] == "end-of-course-outcome"

    failed = comms[str(ids["questionnaire_request"])]
    assert failed["status"] == "not-done" and "sent" not in failed
    assert codes(failed["statusReason"]) == {("urn:rapport:fhir/notification-error", "no_contact_or_consent")}
    assert failed["statusReason"]["text"].startswith("not delivered (gave up at ")
    assert all("sent" in c for c in comms.values() if c["status"] == "completed")


async def test_a_partner_sees_each_communications_kind_status_and_time_only() -> None:
    fake, data = await finished_episode()
    ids = await with_deliveries(fake, data)
    bundle = await export(fake, data, answers=False)
    by_type = validate(bundle)
    comms = {c["identifier"][0]["value"]: c for c in by_type["Communication"]}
    assert len(comms) == 5
    for c in comms.values():
        assert set(c) <= {"resourceType", "id", "extension", "identifier", "status", "category", "subject", "sent",
                          "statusReason"}
    failed = comms[str(ids["questionnaire_request"])]
    assert "coding" not in failed["statusReason"] and "no_contact" not in json.dumps(bundle)


async def test_without_deliveries_the_record_ships_no_notification_code_systems() -> None:
    fake, data = await finished_episode()
    by_type = validate(await export(fake, data))
    assert "Communication" not in by_type and len(by_type["CodeSystem"]) == 2
