"""The episode's FHIR R4 record (domain.md 5): an IPT course as partners who speak FHIR expect it.

One ``collection`` Bundle holding
- the two code systems Rapport publishes (IPT focus problem areas, outcome codes);
- ``EpisodeOfCare`` (the episode: referral to the end of the course), its ``Condition`` (the
  programme's target condition: SNOMED CT where a checked code exists, text otherwise) and a
  ``Goal`` per focus problem area (primary, optional secondary), coded in the problem-area system;
- ``CarePlan`` for the course (contract, template) and one per phase (``partOf`` the course), whose
  activities are the sessions: an ``Appointment`` per session with a known time, an ``Encounter``
  per attended session;
- per submission the ``QuestionnaireResponse`` and total ``Observation`` of ``fhir.py``, and an
  ``Observation`` for each item the catalogue codes (PHQ-9 item 9, LOINC 44260-8);
- once evaluated, an ``Observation`` per instrument's change classification (the reliable-change
  criterion explicit: "no reliable-change criterion" where there is none) and one for the
  end-of-course outcome;
- a ``Communication`` per notification the notifier delivered or gave up on
  (``rapport.notifications``): its kind, channel, recipient role, status and time, linked to the
  session, score or outcome it was about where that is in the Bundle; never its text or an address.

Pure: built from what outcomes stored. Only pseudonymous ids (person, clinician, organisation)
and coded facts: no names, no contact data, no free text. ``answers=False`` (a partner) leaves out
the QuestionnaireResponses and the item Observations (item answers stay with the clinicians), and
keeps of each Communication only its kind, status and time.
References are ``urn:uuid:`` full URLs of entries in the same Bundle; ids are derived from the
episode, session and submission ids, so a re-export gives the same ids.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Iterable, Mapping
from uuid import UUID

from rapport_shared.instruments import NO_RELIABLE_CHANGE_CRITERION, Catalogue

from . import fhir
from .fhir_codes import (
    ACT_CODE,
    CONDITION_CATEGORY,
    DATA_ABSENT_REASON,
    GOAL_PRIORITY,
    LOCAL,
    NOTIFICATION_CHANNEL_SYSTEM,
    NOTIFICATION_CHANNELS,
    NOTIFICATION_ERROR,
    NOTIFICATION_KIND_SYSTEM,
    NOTIFICATION_KINDS,
    OUTCOME_CODES,
    OUTCOME_SYSTEM,
    PROBLEM_AREA_SYSTEM,
    PROBLEM_AREAS,
    SNOMED,
    TARGET_CONDITION_SNOMED,
    TARGET_CONDITION_TEXT,
    WORKFLOW_EPISODE_OF_CARE,
    code_system,
    notification_channel,
    notification_kind,
    outcome_coding,
)

# Fixed namespace: the published code systems have the same resource id in every Bundle.
_CODE_SYSTEMS = uuid.UUID("6f1d0c2e-5b3a-5e0e-9c53-2a0b5f8e7d41")
PHASES = ("initial", "middle", "termination", "maintenance")
_APPOINTMENT_STATUS = {"booked": "booked", "attended": "fulfilled", "missed": "noshow", "cancelled": "cancelled"}
_SESSION_ACTIVITY_STATUS = {"booked": "scheduled", "attended": "completed", "missed": "cancelled", "cancelled": "cancelled"}
_CRITERION_CODE = {"threshold": "criterion-threshold", "jacobson_truax": "criterion-jacobson-truax",
                   "none": "criterion-none"}
_RESULT_CODE = {"improved": "improved", "deteriorated": "deteriorated", "no_reliable_change": "no-reliable-change"}
EPISODE_OUTCOMES = ("finished_course", "counts_toward_recovery", "caseness_at_baseline", "caseness_at_end",
                     "recovery", "reliable_improvement", "reliable_deterioration", "reliable_recovery", "response",
                     "remission")


@dataclass(frozen=True)
class CourseSession:
    session_id: UUID
    number: int
    starts_at: datetime | None
    duration_minutes: int | None
    kind: str | None
    status: str  # booked | attended | missed | cancelled
    phase: str | None
    attended_at: datetime | None
    optional_parent: bool = False  # IPT-A's optional parent session; ``number`` = the session it follows

    @property
    def label(self) -> str:
        if self.optional_parent:
            return f"IPT-A optional parent session (after session {self.number})"
        return f"IPT session {self.number}"


@dataclass(frozen=True)
class EpisodeRecord:
    """What outcomes knows of the episode and its course (intake, rapport.course)."""

    episode_id: UUID
    person_id: str
    clinician_id: str
    template_id: str
    target_condition: str | None
    began_at: datetime
    organisation_id: str | None = None
    focus_primary: str | None = None
    focus_secondary: str | None = None
    focus_confirmed: bool = False
    course_id: UUID | None = None
    contracted_sessions: int | None = None
    phase_plan: tuple[Mapping[str, Any], ...] = ()  # {phase, first_session, last_session}
    planned_at: datetime | None = None
    ended_at: datetime | None = None
    end_reason: str | None = None
    sessions: tuple[CourseSession, ...] = ()

    @property
    def has_course(self) -> bool:
        return self.course_id is not None or bool(self.sessions) or bool(self.phase_plan)


@dataclass(frozen=True)
class OutcomeRecord:
    """The stored end-of-course evaluation (rapport.outcome.evaluated.v1's content)."""

    evaluated_at: datetime
    results: Mapping[str, bool | None]
    attended_sessions: int | None
    treatment_sessions: int | None
    paired_measures: tuple[str, ...] = ()
    instruments: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    condition_measures: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Delivery:
    """A notification the notifier delivered or gave up on (rapport.notification.delivered.v1 /
    failed.v1), with what its cause event links it to in outcomes' own records."""

    notification_id: UUID
    kind: str
    channel: str
    recipient_role: str  # patient | clinician | oncall | partner: never an id or an address
    status: str  # delivered | failed
    at: datetime  # delivered_at / failed_at
    error_code: str | None = None
    # The sessions the cause event introduced or moved (course planned: all of its sessions).
    session_ids: tuple[UUID, ...] = ()
    alert_submission_id: UUID | None = None  # the cause raised an alert on this submission
    about_outcome: bool = False  # the cause is the episode's (latest) evaluation


# Kinds about one session: a course.planned cause names every planned session, so the session is
# the first of them that starts after the message (the notifier sends these before the session).
SESSION_KINDS = frozenset({"session_reminder", "questionnaire_request", "questionnaire_reminder"})
_RECIPIENT = {"clinician": ("Practitioner", "the episode's clinician"),
              "oncall": ("Practitioner", "the on-call clinician"),
              "partner": ("Organization", "a partner's webhook subscription")}


# ---- helpers ---------------------------------------------------------------------------------

def _ref(resource_id: UUID | str) -> dict:
    return {"reference": f"urn:uuid:{resource_id}"}


def _entry(resource: dict) -> dict:
    return {"fullUrl": f"urn:uuid:{resource['id']}", "resource": resource}


def _practitioner(clinician_id: str) -> dict:
    return {"type": "Practitioner", "identifier": {"system": f"{LOCAL}/clinician", "value": clinician_id}}


def _in_episode(eoc_id: UUID) -> list[dict]:
    return [{"url": WORKFLOW_EPISODE_OF_CARE, "valueReference": _ref(eoc_id)}]


def _id(base: UUID, name: str) -> UUID:
    return uuid.uuid5(base, name)


def _quantity(value: int | float) -> dict:
    number = int(value) if float(value).is_integer() else round(float(value), 2)
    return {"value": number, "unit": "{score}", "system": fhir.UCUM, "code": "{score}"}


def _absent(code: str, text: str) -> dict:
    return {"coding": [{"system": DATA_ABSENT_REASON, "code": code}], "text": text}


def _bool_component(code: str, value: bool | None, absent_text: str = "not determinable") -> dict:
    component: dict = {"code": {"coding": [outcome_coding(code)]}}
    if value is None:
        component["dataAbsentReason"] = _absent("unknown", absent_text)
    else:
        component["valueBoolean"] = value
    return component


def _end(s: CourseSession) -> datetime | None:
    if s.starts_at is None or s.duration_minutes is None:
        return None
    return s.starts_at + timedelta(minutes=s.duration_minutes)


# ---- episode, condition, goals ---------------------------------------------------------------

def code_systems() -> list[dict]:
    """The code systems Rapport publishes (also written to docs/fhir/)."""
    return [
        code_system(system=PROBLEM_AREA_SYSTEM, resource_id=str(_id(_CODE_SYSTEMS, PROBLEM_AREA_SYSTEM)),
                    name="IPTProblemArea", title="IPT focus problem areas",
                    description="The four interpersonal problem areas an IPT course focuses on (one primary, an "
                                "optional secondary); Rapport domain rules, section 1.",
                    concepts=PROBLEM_AREAS),
        code_system(system=OUTCOME_SYSTEM, resource_id=str(_id(_CODE_SYSTEMS, OUTCOME_SYSTEM)),
                    name="RapportOutcome", title="Rapport outcome codes",
                    description="Change classification of outcome measures (NHS Talking Therapies definitions, "
                                "Jacobson-Truax reliable change) and the parts of an IPT course record.",
                    concepts=OUTCOME_CODES),
        *communication_code_systems(),
    ]


def communication_code_systems() -> list[dict]:
    """The code systems of a Communication's category and medium (shipped with Communications)."""
    return [
        code_system(system=NOTIFICATION_KIND_SYSTEM, resource_id=str(_id(_CODE_SYSTEMS, NOTIFICATION_KIND_SYSTEM)),
                    name="RapportNotificationKind", title="Rapport notification kinds",
                    description="What a message the notifier sent was for (docs/notifier.md); the category of a "
                                "Communication.",
                    concepts=NOTIFICATION_KINDS),
        code_system(system=NOTIFICATION_CHANNEL_SYSTEM,
                    resource_id=str(_id(_CODE_SYSTEMS, NOTIFICATION_CHANNEL_SYSTEM)),
                    name="RapportNotificationChannel", title="Rapport notification channels",
                    description="The channel a message of the notifier went over; the medium of a Communication.",
                    concepts=NOTIFICATION_CHANNELS),
    ]


def episode_of_care(r: EpisodeRecord, ids: "_Ids") -> dict:
    status = "finished" if r.ended_at else ("active" if r.has_course else "planned")
    resource: dict = {
        "resourceType": "EpisodeOfCare", "id": str(ids.episode),
        "identifier": [{"system": f"{LOCAL}/episode", "value": str(r.episode_id)}],
        "status": status,
        "type": [{"coding": [{"system": f"{LOCAL}/template", "code": r.template_id}],
                  "text": f"interpersonal psychotherapy programme {r.template_id}"}],
        "diagnosis": [{"condition": _ref(ids.condition), "rank": 1}],
        "patient": fhir.subject(r.person_id),
        "period": {"start": fhir.instant(r.began_at), **({"end": fhir.instant(r.ended_at)} if r.ended_at else {})},
        "careManager": _practitioner(r.clinician_id),
    }
    if r.organisation_id:
        resource["managingOrganization"] = {"type": "Organization", "identifier": {
            "system": f"{LOCAL}/organisation", "value": r.organisation_id}}
    return resource


def condition(r: EpisodeRecord, ids: "_Ids") -> dict:
    label = TARGET_CONDITION_TEXT.get(r.target_condition or "", r.target_condition or "not recorded")
    code: dict = {"text": f"{label} (the programme's target condition)"}
    if r.target_condition in TARGET_CONDITION_SNOMED:
        concept, term = TARGET_CONDITION_SNOMED[r.target_condition]
        code["coding"] = [{"system": SNOMED, "code": concept, "display": term}]
    return {
        "resourceType": "Condition", "id": str(ids.condition),
        "extension": _in_episode(ids.episode),
        "identifier": [{"system": f"{LOCAL}/target-condition", "value": f"{r.episode_id}:{r.target_condition}"}],
        # The target condition recorded at intake; its clinical status is not asserted here.
        "category": [{"coding": [{"system": CONDITION_CATEGORY, "code": "encounter-diagnosis"}]}],
        "code": code,
        "subject": fhir.subject(r.person_id),
        "recordedDate": fhir.instant(r.began_at),
    }


def _goal_status(r: EpisodeRecord) -> str:
    if r.ended_at:
        return "completed" if r.end_reason == "completed" else "cancelled"
    return "active" if r.focus_confirmed else "proposed"  # intake's focus is provisional until confirmed


def goals(r: EpisodeRecord, ids: "_Ids") -> list[dict]:
    out = []
    labels = {code: display for code, display, _ in PROBLEM_AREAS}
    for rank, area in (("primary", r.focus_primary), ("secondary", r.focus_secondary)):
        if not area:
            continue
        out.append({
            "resourceType": "Goal", "id": str(ids.goal(rank)),
            "lifecycleStatus": _goal_status(r),
            "priority": {"coding": [{"system": GOAL_PRIORITY,
                                     "code": "high-priority" if rank == "primary" else "medium-priority"}]},
            "description": {"coding": [{"system": PROBLEM_AREA_SYSTEM, "code": area, "display": labels.get(area, area)}],
                            "text": f"IPT focus problem area ({rank}): {labels.get(area, area).lower()}"},
            "subject": fhir.subject(r.person_id),
            "addresses": [_ref(ids.condition)],
        })
    return out


# ---- the course: care plans, appointments, encounters ----------------------------------------

def _phase_of(s: CourseSession, spans: tuple[Mapping[str, Any], ...]) -> str | None:
    if s.status == "attended" and s.phase in PHASES:
        return s.phase
    for span in spans:
        if span["first_session"] <= s.number <= span["last_session"]:
            return span["phase"]
    return None


def _session_status(r: EpisodeRecord, s: CourseSession) -> str:
    # A session still booked after the course ended will not take place (domain.md 3.5).
    if s.status == "booked" and r.ended_at and (s.starts_at is None or s.starts_at >= r.ended_at):
        return "cancelled"
    return s.status


def appointment(r: EpisodeRecord, s: CourseSession, ids: "_Ids") -> dict | None:
    end = _end(s)
    if s.starts_at is None or end is None:
        return None  # time not known here (attendance seen without the plan): an Encounter only
    return {
        "resourceType": "Appointment", "id": str(ids.appointment(s)),
        "identifier": [{"system": f"{LOCAL}/session", "value": str(s.session_id)}],
        "status": _APPOINTMENT_STATUS[_session_status(r, s)],
        "serviceType": [{"coding": [{"system": f"{LOCAL}/session-kind", "code": s.kind or "individual"}]}],
        "description": s.label,
        "start": fhir.instant(s.starts_at), "end": fhir.instant(end), "minutesDuration": s.duration_minutes,
        "participant": [{"actor": {"type": "Patient", **fhir.subject(r.person_id)}, "status": "accepted"},
                        {"actor": _practitioner(r.clinician_id), "status": "accepted"}],
    }


def encounter(r: EpisodeRecord, s: CourseSession, ids: "_Ids", has_appointment: bool, phase: str | None) -> dict:
    start = s.starts_at or s.attended_at
    end = _end(s)
    resource: dict = {
        "resourceType": "Encounter", "id": str(ids.encounter(s)),
        "identifier": [{"system": f"{LOCAL}/session", "value": str(s.session_id)}],
        "status": "finished",
        # Outpatient psychotherapy; whether in person or remote is not known to outcomes.
        "class": {"system": ACT_CODE, "code": "AMB", "display": "ambulatory"},
        "type": [{"coding": [{"system": f"{LOCAL}/session-kind", "code": s.kind or "individual"}],
                  "text": s.label + (f" ({phase} phase)" if phase else "")}],
        "subject": fhir.subject(r.person_id),
        "episodeOfCare": [_ref(ids.episode)],
        "participant": [{"individual": _practitioner(r.clinician_id)}],
    }
    if has_appointment:
        resource["appointment"] = [_ref(ids.appointment(s))]
    if start is not None:
        resource["period"] = {"start": fhir.instant(start),
                              **({"end": fhir.instant(end)} if end and s.starts_at else {})}
    return resource


def _activity(r: EpisodeRecord, s: CourseSession, ids: "_Ids", has_appointment: bool) -> dict:
    activity: dict = {}
    if s.status == "attended":
        activity["outcomeReference"] = [_ref(ids.encounter(s))]
    if has_appointment:
        activity["reference"] = _ref(ids.appointment(s))
    else:  # a reference or a detail, not both (cpl-3)
        status = _session_status(r, s)
        activity["detail"] = {"kind": "Appointment", "status": _SESSION_ACTIVITY_STATUS[status],
                              "description": s.label}
        if status == "missed":
            activity["detail"]["statusReason"] = {"text": "missed (did not attend)"}
    return activity


def _phase_status(r: EpisodeRecord, phase: str, reached: list[str]) -> str:
    if r.ended_at:
        return "completed" if phase in reached else "revoked"
    later = [p for p in reached if PHASES.index(p) > PHASES.index(phase)]
    return "completed" if later else "active"


def _course_status(r: EpisodeRecord) -> str:
    if r.ended_at:
        return "completed" if r.end_reason == "completed" else "revoked"
    return "active"


def care_plans(r: EpisodeRecord, ids: "_Ids", goal_ids: list[str], appointments: set[UUID]) -> list[dict]:
    sessions = sorted(r.sessions, key=lambda s: (s.number, s.optional_parent))
    by_phase: dict[str | None, list[CourseSession]] = {}
    for s in sessions:
        by_phase.setdefault(_phase_of(s, r.phase_plan), []).append(s)
    phases = [span["phase"] for span in r.phase_plan if span["phase"] in PHASES]
    phases += [p for p in PHASES if p in by_phase and p not in phases]
    reached = [p for p in phases if any(s.status == "attended" for s in by_phase.get(p, []))]
    spans = {span["phase"]: span for span in r.phase_plan}
    first = next((s.starts_at for s in sessions if s.starts_at), None)
    course: dict = {
        "resourceType": "CarePlan", "id": str(ids.care_plan),
        "extension": _in_episode(ids.episode),
        "status": _course_status(r), "intent": "plan",
        "category": [{"coding": [outcome_coding("ipt-course")]}],
        "title": f"IPT course ({r.template_id}" + (f", {r.contracted_sessions} sessions)" if r.contracted_sessions
                                                    else ")"),
        "subject": fhir.subject(r.person_id),
        "author": _practitioner(r.clinician_id),
        "addresses": [_ref(ids.condition)],
        "goal": [_ref(g) for g in goal_ids],
        "instantiatesUri": [f"{LOCAL}/template/{r.template_id}"],
    }
    if r.course_id:
        course["identifier"] = [{"system": f"{LOCAL}/course", "value": str(r.course_id)}]
    if r.planned_at:
        course["created"] = fhir.instant(r.planned_at)
    if first or r.ended_at:
        course["period"] = {**({"start": fhir.instant(first)} if first else {}),
                            **({"end": fhir.instant(r.ended_at)} if r.ended_at else {})}
    # Sessions outside every phase (none planned, none attended with a phase) hang on the course.
    unplaced = by_phase.get(None, [])
    if unplaced:
        course["activity"] = [_activity(r, s, ids, s.session_id in appointments) for s in unplaced]
    out = [course]
    for phase in phases:
        members = by_phase.get(phase, [])
        span = spans.get(phase)
        plan: dict = {
            "resourceType": "CarePlan", "id": str(ids.phase_plan(phase)),
            "extension": _in_episode(ids.episode),
            "status": _phase_status(r, phase, reached), "intent": "plan",
            "category": [{"coding": [outcome_coding("ipt-phase")], "text": f"{phase} phase"}],
            "title": f"{phase.capitalize()} phase",
            "subject": fhir.subject(r.person_id),
            "partOf": [_ref(ids.care_plan)],
        }
        if span:
            first_n, last_n = span["first_session"], span["last_session"]
            plan["description"] = (f"planned session {first_n}" if first_n == last_n
                                   else f"planned sessions {first_n}-{last_n}")
        starts = [s.starts_at for s in members if s.starts_at]
        if starts:
            plan["period"] = {"start": fhir.instant(min(starts)), "end": fhir.instant(max(starts))}
        if members:
            plan["activity"] = [_activity(r, s, ids, s.session_id in appointments) for s in members]
        out.append(plan)
    return out


# ---- observations: items and change classifications -------------------------------------------

def item_observations(s: fhir.ExportedSubmission, person_id: str, catalogue: Catalogue) -> list[dict]:
    """One Observation per item the catalogue gives a code (PHQ-9 item 9: LOINC 44260-8), with the
    coded flag it raises (never a risk score)."""
    d = catalogue.get(s.instrument)
    out = []
    for item in d.items:
        if not item.loinc or item.number not in s.answers:
            continue
        answer = s.answers[item.number]
        resource: dict = {
            "resourceType": "Observation", "id": str(uuid.uuid5(s.submission_id, f"observation.item.{item.number}")),
            "status": "final",
            "category": [{"coding": [{"system": fhir.OBSERVATION_CATEGORY, "code": "survey", "display": "Survey"}]}],
            "code": {"coding": [{"system": fhir.LOINC, "code": item.loinc}],
                     "text": f"{d.name} item {item.number}" + (f": {item.label}" if item.label else "")},
            "subject": fhir.subject(person_id),
            "effectiveDateTime": fhir.instant(s.administered_at), "issued": fhir.instant(s.scored_at),
            "valueInteger": answer,
            "derivedFrom": [_ref(s.submission_id)],
        }
        raised = [f.code for f in d.flags if f.item == item.number and _flag(answer, f.op, f.value)]
        if raised:
            resource["interpretation"] = [{"coding": [{"system": f"{LOCAL}/flag", "code": code} for code in raised],
                                           "text": ", ".join(code.replace("_", " ") for code in raised)}]
        out.append(resource)
    return out


def _flag(value: int, op: str, bound: int) -> bool:
    return {"gt": value > bound, "ge": value >= bound, "lt": value < bound, "le": value <= bound}[op]


def _role(code: str, outcome: OutcomeRecord) -> str:
    if code in outcome.paired_measures:
        return "paired-measure"
    return "condition-measure" if code in outcome.condition_measures else "additional-measure"


def change_observation(code: str, r: EpisodeRecord, outcome: OutcomeRecord, ids: "_Ids", catalogue: Catalogue,
                       submissions: Mapping[UUID, fhir.ExportedSubmission]) -> dict:
    """An instrument's change classification, its criterion always explicit."""
    d = catalogue.get(code)
    paired = outcome.instruments.get(code)
    condition_measure = outcome.condition_measures.get(code)
    criterion = ((paired or {}).get("reliable_change_criterion") or (condition_measure or {}).get(
        "reliable_change_criterion") or d.reliable_change_criterion)
    threshold = (paired or condition_measure or {}).get("reliable_change_threshold", d.reliable_change_threshold)
    resource: dict = {
        "resourceType": "Observation", "id": str(ids.change(code)),
        "extension": _in_episode(ids.episode),
        "status": "final",
        "category": [{"coding": [{"system": fhir.OBSERVATION_CATEGORY, "code": "survey", "display": "Survey"}]}],
        "code": {"coding": [outcome_coding("reliable-change")], "text": f"{d.name} reliable change from baseline"},
        "subject": fhir.subject(r.person_id),
        "issued": fhir.instant(outcome.evaluated_at),
    }
    components = [
        {"code": {"coding": [outcome_coding("instrument")]}, "valueCodeableConcept": fhir.total_code(d)},
        {"code": {"coding": [outcome_coding("measure-role")]},
         "valueCodeableConcept": {"coding": [outcome_coding(_role(code, outcome))]}},
        {"code": {"coding": [outcome_coding("criterion")]},
         "valueCodeableConcept": {"coding": [outcome_coding(_CRITERION_CODE[criterion])],
                                  **({"text": NO_RELIABLE_CHANGE_CRITERION} if criterion == "none" else {})}},
    ]
    if threshold is not None:
        components.append({"code": {"coding": [outcome_coding("threshold")]}, "valueQuantity": _quantity(threshold)})
    status = (condition_measure or {}).get("status", "paired" if paired else "not_collected")
    if paired is None or status != "paired":
        # The measure is missing at a time point: named, not guessed (domain.md 3.4).
        missing = "no score after the baseline" if status == "baseline_only" else "not collected"
        resource["dataAbsentReason"] = _absent("not-performed", missing)
        if paired is not None or (condition_measure or {}).get("baseline_total") is not None:
            baseline = (paired or condition_measure)["baseline_total"]
            components.append({"code": {"coding": [outcome_coding("baseline-total")]}, "valueQuantity": _quantity(baseline)})
        resource["component"] = components
        return resource
    if criterion == "none":
        resource["valueCodeableConcept"] = {"coding": [outcome_coding("no-criterion")],
                                           "text": f"{NO_RELIABLE_CHANGE_CRITERION}: raw difference only"}
    elif paired.get("reliable_change"):
        result = _RESULT_CODE[paired["reliable_change"]]
        resource["valueCodeableConcept"] = {"coding": [outcome_coding(result)]}
    else:
        resource["dataAbsentReason"] = _absent("unknown", "not determinable")
    components += [
        {"code": {"coding": [outcome_coding("baseline-total")]}, "valueQuantity": _quantity(paired["baseline_total"])},
        {"code": {"coding": [outcome_coding("final-total")]}, "valueQuantity": _quantity(paired["final_total"])},
        {"code": {"coding": [outcome_coding("change")]}, "valueQuantity": _quantity(paired["change"])},
    ]
    for name in ("caseness_at_baseline", "caseness_at_end"):
        if paired.get(name) is not None:
            components.append(_bool_component(name.replace("_", "-"), paired[name]))
    resource["component"] = components
    first, last = (submissions.get(UUID(str(paired[k]))) for k in ("baseline_submission_id", "final_submission_id"))
    if first and last:
        resource["effectivePeriod"] = {"start": fhir.instant(first.administered_at),
                                       "end": fhir.instant(last.administered_at)}
        resource["derivedFrom"] = [_ref(fhir.observation_id(first.submission_id)),
                                   _ref(fhir.observation_id(last.submission_id))]
    return resource


def outcome_observation(r: EpisodeRecord, outcome: OutcomeRecord, ids: "_Ids", members: list[str]) -> dict:
    results = outcome.results
    components = []
    for name in EPISODE_OUTCOMES:
        value = results.get(name)
        absent = "not at caseness at baseline: does not count toward recovery" if (
            name in ("recovery", "reliable_recovery") and results.get("counts_toward_recovery") is False) \
            else "not determinable"
        components.append(_bool_component(name.replace("_", "-"), value, absent))
    for name, value in (("attended-sessions", outcome.attended_sessions),
                        ("treatment-sessions", outcome.treatment_sessions)):
        component: dict = {"code": {"coding": [outcome_coding(name)]}}
        if value is None:
            component["dataAbsentReason"] = _absent("unknown", "attendance not seen from the start of the course")
        else:
            component["valueInteger"] = value
        components.append(component)
    resource: dict = {
        "resourceType": "Observation", "id": str(ids.outcome),
        "extension": _in_episode(ids.episode),
        "status": "final",
        "category": [{"coding": [{"system": fhir.OBSERVATION_CATEGORY, "code": "survey", "display": "Survey"}]}],
        "code": {"coding": [outcome_coding("end-of-course-outcome")], "text": "End-of-course outcome"},
        "subject": fhir.subject(r.person_id),
        "issued": fhir.instant(outcome.evaluated_at),
        "hasMember": [_ref(m) for m in members],
        "component": components,
    }
    if r.ended_at:
        resource["effectiveDateTime"] = fhir.instant(r.ended_at)
    return resource


# ---- communications ---------------------------------------------------------------------------

def _session_of(d: Delivery, sessions: Mapping[UUID, CourseSession]) -> CourseSession | None:
    candidates = [sessions[i] for i in d.session_ids if i in sessions]
    if len(candidates) == 1:
        return candidates[0]
    if d.kind in SESSION_KINDS:
        upcoming = sorted((s for s in candidates if s.starts_at and s.starts_at > d.at), key=lambda s: s.starts_at)
        return upcoming[0] if upcoming else None
    return None


def communication(r: EpisodeRecord, d: Delivery, ids: "_Ids", *, present: set[str], answers: bool) -> dict:
    """One delivery. ``present``: the ids of the Bundle's resources (links only to those)."""
    resource: dict = {
        "resourceType": "Communication", "id": str(_id(d.notification_id, "Communication")),
        "extension": _in_episode(ids.episode),
        "identifier": [{"system": f"{LOCAL}/notification", "value": str(d.notification_id)}],
        "status": "completed" if d.status == "delivered" else "not-done",
        "category": [notification_kind(d.kind)],
        "subject": fhir.subject(r.person_id),
    }
    if d.status == "delivered":
        resource["sent"] = fhir.instant(d.at)
    else:  # never sent: the time the notifier gave up, and (clinicians) its error code
        reason: dict = {"text": f"not delivered (gave up at {fhir.instant(d.at)})"}
        if answers and d.error_code:
            reason["coding"] = [{"system": NOTIFICATION_ERROR, "code": d.error_code}]
        resource["statusReason"] = reason
    if not answers:
        return resource  # a partner: kind, status and time only
    resource["medium"] = [notification_channel(d.channel)]
    if d.recipient_role == "patient":
        resource["recipient"] = [{"type": "Patient", **fhir.subject(r.person_id)}]
    elif d.recipient_role in _RECIPIENT:
        kind, display = _RECIPIENT[d.recipient_role]
        resource["recipient"] = [{"type": kind, "display": display}]
    about: list[UUID] = []
    session = _session_of(d, {s.session_id: s for s in r.sessions})
    if session is not None:
        if str(ids.encounter(session)) in present:
            resource["encounter"] = _ref(ids.encounter(session))
        about.append(ids.appointment(session))
    elif len(d.session_ids) > 1:
        about.append(ids.care_plan)  # the course the cause planned
    if d.alert_submission_id is not None:
        about.append(fhir.observation_id(d.alert_submission_id))  # the score that raised the alert
    if d.about_outcome:
        about.append(ids.outcome)
    links = [_ref(a) for a in dict.fromkeys(about) if str(a) in present]
    if links:
        resource["about"] = links
    return resource


# ---- the bundle ------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Ids:
    episode_id: UUID

    @property
    def episode(self) -> UUID:
        return _id(self.episode_id, "EpisodeOfCare")

    @property
    def condition(self) -> UUID:
        return _id(self.episode_id, "Condition")

    @property
    def care_plan(self) -> UUID:
        return _id(self.episode_id, "CarePlan")

    @property
    def outcome(self) -> UUID:
        return _id(self.episode_id, "Observation.outcome")

    def goal(self, rank: str) -> UUID:
        return _id(self.episode_id, f"Goal.{rank}")

    def phase_plan(self, phase: str) -> UUID:
        return _id(self.episode_id, f"CarePlan.{phase}")

    def change(self, code: str) -> UUID:
        return _id(self.episode_id, f"Observation.change.{code}")

    @staticmethod
    def appointment(s: CourseSession) -> UUID:
        return s.session_id

    @staticmethod
    def encounter(s: CourseSession) -> UUID:
        return _id(s.session_id, "Encounter")


def record_bundle(*, record: EpisodeRecord, submissions: Iterable[fhir.ExportedSubmission], catalogue: Catalogue,
                  generated_at: datetime, outcome: OutcomeRecord | None = None, answers: bool = True,
                  deliveries: Iterable[Delivery] = ()) -> dict:
    """The episode's FHIR record as one Bundle (see the module docstring)."""
    ids = _Ids(record.episode_id)
    subs = list(submissions)
    sent = sorted(deliveries, key=lambda d: (d.at, str(d.notification_id)))
    # The notification code systems travel only with the Communications that use them.
    systems = code_systems() if sent else [c for c in code_systems() if c not in communication_code_systems()]
    resources: list[dict] = [*systems, episode_of_care(record, ids), condition(record, ids)]
    goal_resources = goals(record, ids)
    resources += goal_resources
    appointments = [a for a in (appointment(record, s, ids) for s in record.sessions) if a]
    with_appointment = {UUID(a["id"]) for a in appointments}
    if record.has_course:
        resources += care_plans(record, ids, [g["id"] for g in goal_resources], with_appointment)
    resources += appointments
    resources += [encounter(record, s, ids, s.session_id in with_appointment, _phase_of(s, record.phase_plan))
                  for s in sorted(record.sessions, key=lambda s: (s.number, s.optional_parent)) if s.status == "attended"]
    for s in subs:
        if answers:
            resources.append(fhir.questionnaire_response(s, record.person_id, record.episode_id, catalogue))
        resources.append(fhir.observation(s, record.person_id, catalogue, derived_from=answers))
        if answers:
            resources += item_observations(s, record.person_id, catalogue)
    if outcome is not None:
        by_id = {s.submission_id: s for s in subs}
        codes = [c for c in outcome.instruments if c in catalogue]
        codes += [c for c in outcome.condition_measures if c not in outcome.instruments and c in catalogue]
        changes = [change_observation(c, record, outcome, ids, catalogue, by_id) for c in codes]
        resources += changes
        resources.append(outcome_observation(record, outcome, ids, [c["id"] for c in changes]))
    present = {r["id"] for r in resources}
    resources += [communication(record, d, ids, present=present, answers=answers) for d in sent]
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid5(record.episode_id, f"record:{fhir.instant(generated_at)}")),
        "identifier": {"system": f"{LOCAL}/episode", "value": str(record.episode_id)},
        "type": "collection",
        "timestamp": fhir.instant(generated_at),
        "entry": [_entry(r) for r in resources],
    }
