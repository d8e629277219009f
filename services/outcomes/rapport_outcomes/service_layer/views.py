"""What outcomes' HTTP reads answer: read-only queries through the repositories, shaped as the
API's JSON bodies (also the bodies of the submit and resolve answers). Nothing here writes.

Each takes a unit of work used for reading (its repositories and policy), the catalogue's the
policy alone; who may read which record is the access policy's (access.yaml), decided before a
view runs.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Mapping
from uuid import UUID

from rapport_shared.errors import NotFound
from rapport_shared.http.access import ListFilter
from rapport_shared.instruments import NO_RELIABLE_CHANGE_CRITERION, Catalogue, InstrumentDefinition

from rapport_shared.contracts.outcomes import MeasurementRecord

from ..domain import cohort, fhir, fhir_record
from ..domain.measurement import attended_numbers, measurement_record
from ..domain.model import Episode, Submission
from ..domain.policy import OutcomesPolicy
from .unit_of_work import OutcomesUnitOfWork


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t else None


def criterion_view(d: InstrumentDefinition) -> dict:
    """The instrument's reliable-change criterion, said explicitly: ``none`` comes with the words
    "no reliable-change criterion" (domain.md 3.4), never as a bare null threshold."""
    out: dict = {"reliable_change_criterion": d.reliable_change_criterion,
                 "reliable_change_threshold": d.reliable_change_threshold}
    if d.reliable_change_criterion == "none":
        out["reliable_change_note"] = f"{NO_RELIABLE_CHANGE_CRITERION}: change is the raw difference only"
    return out


def submission_view(s: Submission, catalogue: Catalogue | None = None) -> dict:
    """``catalogue``: to name the instrument's reliable-change criterion beside ``reliable_change``."""
    extra = {}
    if catalogue is not None and s.instrument in catalogue:
        extra["reliable_change_criterion"] = catalogue.get(s.instrument).reliable_change_criterion
    return {
        "submission_id": str(s.submission_id), "episode_id": str(s.episode_id),
        "client_submission_id": s.client_submission_id, "instrument": s.instrument, "timepoint": s.timepoint.value,
        "session_number": s.session_number, "total": s.total, "display_total": s.display_total, "band": s.band,
        "caseness": s.caseness, "subscales": dict(s.subscales), "flags": list(s.flags),
        "baseline_total": s.baseline_total, "change_from_baseline": s.change_from_baseline,
        "reliable_change": s.reliable_change.value if s.reliable_change else None,
        "administered_at": _iso(s.administered_at), "scored_at": _iso(s.scored_at),
        "alert_ids": [str(a) for a in s.alert_ids], **extra,
    }


def alert_view(a: Mapping[str, Any]) -> dict:
    out = {
        "alert_id": str(a["alert_id"]), "episode_id": str(a["episode_id"]), "kind": a["kind"], "urgency": a["urgency"],
        "reason_code": a["reason_code"], "clinician_id": a["clinician_id"],
        "submission_id": str(a["submission_id"]) if a["submission_id"] else None, "instrument": a["instrument"],
        "session_number": a["session_number"], "raised_at": _iso(a["raised_at"]), "status": a["status"],
        "resolution": None if a["status"] == "open" else {
            "resolved_by": a["resolved_by"], "resolved_at": _iso(a["resolved_at"]), "recorded_at": _iso(a["recorded_at"]),
            "action": a["action"], "action_text": a["action_text"]},
    }
    if "linked_alert_ids" in a.keys():  # the open alerts of its cause a repeat was linked to
        out["linked_alert_ids"] = [str(x) for x in a["linked_alert_ids"] or []]
    if "linked_count" in a.keys():
        out["linked_submissions"] = a["linked_count"]
    return out


def instrument_view(d) -> dict:
    return {"code": d.code, "name": d.name, "title": d.title, "rater": d.rater, "measures": d.measures,
            "loinc_total": d.loinc_total, "loinc_panel": d.loinc_panel,
            "items": [{"number": i.number, "allowed": list(i.allowed) if i.allowed else list(range(i.min, i.max + 1)),
                       **({"label": i.label} if i.label else {})} for i in d.items],
            "total_range": d.total_range.model_dump(), "bands": [b.model_dump() for b in d.bands],
            "caseness": d.caseness.model_dump() if d.caseness else None,
            **criterion_view(d),
            "reliable_change_sources": d.reliable_change.model_dump(
                mode="json", include={"source", "citations", "caveats", "sd", "reliability"})}


async def _episode(uow: OutcomesUnitOfWork, episode_id: UUID) -> Episode:
    episode = await uow.episodes.get(episode_id)
    if episode is None:
        raise NotFound(f"no episode {episode_id}", field="episode_id")
    return episode


# ---- episodes -------------------------------------------------------------------------------

async def measurement(uow: OutcomesUnitOfWork, episode: Episode, course: Mapping[str, Any] | None) -> MeasurementRecord:
    """What the measurement schedule expected of the episode's attended sessions so far, and what
    is missing (domain.md 3.4): also the evaluation's (handlers)."""
    course = course or {}
    attended = course.get("ended_attended_sessions") or course.get("attended_sessions")
    return measurement_record(
        uow.policy.schedule, target_condition=episode.target_condition,
        contracted_sessions=course.get("contracted_sessions"),
        sessions=attended_numbers(await uow.sessions.of_episode(episode.episode_id), attended),
        collected=await uow.submissions.collected(episode.episode_id))


async def scores(uow: OutcomesUnitOfWork, episode_id: UUID) -> dict:
    """An episode's score history per instrument (with its bands), and flat in time order."""
    policy = uow.policy
    episode = await _episode(uow, episode_id)
    subs = await uow.submissions.history(episode_id, policy)
    by_instrument: dict[str, dict] = {}
    for s in subs:
        if s.instrument not in by_instrument:
            d = policy.catalogue.get(s.instrument)
            by_instrument[s.instrument] = {
                "name": d.name, "loinc_total": d.loinc_total,
                "bands": [{"code": b.code, "label": b.label, "lower": b.lower} for b in d.bands],
                "caseness": d.caseness.model_dump() if d.caseness else None,
                **criterion_view(d), "scores": [],
            }
        by_instrument[s.instrument]["scores"].append(submission_view(s, policy.catalogue))
    record = await measurement(uow, episode, await uow.courses.get(episode_id))
    return {"episode_id": str(episode_id), "instruments": by_instrument,
            # flat, in time order (the walking skeleton's shape)
            "scores": [submission_view(s, policy.catalogue) for s in subs],
            # expected / missing so far, over the sessions attended (domain.md 3.4)
            "measurement": record.model_dump(mode="json")}


async def submission(uow: OutcomesUnitOfWork, episode_id: UUID, submission_id: UUID) -> dict:
    await _episode(uow, episode_id)
    found = [s for s in await uow.submissions.history(episode_id, uow.policy) if s.submission_id == submission_id]
    if not found:
        raise NotFound(f"no submission {submission_id} in episode {episode_id}", field="submission_id")
    return {**submission_view(found[0], uow.policy.catalogue), "answers": {str(k): v for k, v in sorted(found[0].answers.items())}}


async def outcome(uow: OutcomesUnitOfWork, episode_id: UUID) -> dict:
    episode = await _episode(uow, episode_id)
    ev = await uow.evaluations.get(episode_id)
    if ev is None:
        raise NotFound(f"episode {episode_id} has not been evaluated (its course has not ended)", field="episode_id")
    out = {k: ev[k] for k in ("template_id", "clinician_id", "end_reason", "attended_sessions", "treatment_sessions",
                              "finished_course",
                              "counts_toward_recovery", "caseness_at_baseline", "caseness_at_end", "recovery",
                              "reliable_improvement", "reliable_deterioration", "reliable_recovery", "response",
                              "remission")}
    detail = json.loads(ev["detail"]) if isinstance(ev["detail"], str) else dict(ev["detail"])
    for code, fields in (detail.get("instruments") or {}).items():
        # An evaluation stored before the criterion was recorded: the catalogue's (it follows from it).
        if "reliable_change_criterion" not in fields and code in uow.policy.catalogue:
            d = uow.policy.catalogue.get(code)
            fields.update(reliable_change_criterion=d.reliable_change_criterion,
                          reliable_change_threshold=d.reliable_change_threshold)
    if detail.get("measurement") is None:  # evaluated before it was recorded: from what is stored now
        detail["measurement"] = (await measurement(uow, episode, await uow.courses.get(episode_id))).model_dump(
            mode="json")
    return {"episode_id": str(episode_id), "course_id": str(ev["course_id"]) if ev["course_id"] else None, **out,
            **detail, "ended_at": _iso(ev["ended_at"]), "evaluated_at": _iso(ev["evaluated_at"]),
            "event_id": str(ev["event_id"]), "revision": ev["revision"]}


async def fhir_bundle(uow: OutcomesUnitOfWork, episode_id: UUID, *, answers: bool, content: str = "results") -> dict:
    """The episode's FHIR Bundle; ``answers``: with a QuestionnaireResponse per submission (and the
    item Observations). ``content``: ``results`` (the scores: QuestionnaireResponse + total
    Observation per submission) or ``episode`` (the whole record: EpisodeOfCare, Condition, Goal,
    CarePlan, Appointment/Encounter per session, the scores, the change classifications and a
    Communication per delivery)."""
    policy = uow.policy
    episode = await _episode(uow, episode_id)
    subs = await uow.submissions.exported(episode_id, policy)
    if content != "episode":
        return fhir.episode_bundle(episode_id=episode_id, person_id=episode.person_id, submissions=subs,
                                   catalogue=policy.catalogue, generated_at=uow.now(), answers=answers)
    course = await uow.courses.get(episode_id) or {}
    evaluation = await uow.evaluations.get(episode_id)
    return fhir_record.record_bundle(
        record=_episode_record(episode, course, await uow.sessions.of_episode(episode_id)), submissions=subs,
        catalogue=policy.catalogue, generated_at=uow.now(), answers=answers,
        outcome=_outcome_record(evaluation) if evaluation else None,
        deliveries=await uow.communications.of_episode(episode_id))


def _episode_record(episode: Episode, course: Mapping[str, Any], sessions) -> fhir_record.EpisodeRecord:
    plan = course.get("phase_plan")
    plan = json.loads(plan) if isinstance(plan, str) else (plan or [])
    # The course's focus (confirmed or changed in the initial phase) over intake's provisional one.
    primary = course.get("focus_primary") or episode.focus_primary
    secondary = course.get("focus_secondary") if course.get("focus_primary") else episode.focus_secondary
    return fhir_record.EpisodeRecord(
        episode_id=episode.episode_id, person_id=episode.person_id,
        clinician_id=course.get("clinician_id") or episode.clinician_id,
        template_id=course.get("template_id") or episode.template_id, target_condition=episode.target_condition,
        began_at=episode.began_at, organisation_id=episode.organisation_id, focus_primary=primary,
        focus_secondary=secondary, focus_confirmed=course.get("focus_confirmed_at") is not None,
        course_id=course.get("course_id"), contracted_sessions=course.get("contracted_sessions"),
        phase_plan=tuple(plan), planned_at=course.get("planned_at"), ended_at=course.get("ended_at"),
        end_reason=course.get("end_reason"), sessions=tuple(sessions))


def _outcome_record(ev: Mapping[str, Any]) -> fhir_record.OutcomeRecord:
    detail = json.loads(ev["detail"]) if isinstance(ev["detail"], str) else dict(ev["detail"])
    return fhir_record.OutcomeRecord(
        evaluated_at=ev["evaluated_at"], results={k: ev[k] for k in fhir_record.EPISODE_OUTCOMES},
        attended_sessions=ev["attended_sessions"], treatment_sessions=ev["treatment_sessions"],
        paired_measures=tuple(detail.get("paired_measures") or ()), instruments=detail.get("instruments") or {},
        condition_measures=detail.get("condition_measures") or {})


async def episode_alerts(uow: OutcomesUnitOfWork, episode_id: UUID) -> dict:
    await _episode(uow, episode_id)
    rows = await uow.alerts.search(clinician_id=None, status=None, kind=None, episode_id=episode_id, limit=1000)
    return {"episode_id": str(episode_id), "alerts": [alert_view(r) for r in rows]}


# ---- alerts ---------------------------------------------------------------------------------

async def alerts(uow: OutcomesUnitOfWork, *, clinician_id: str | None, status: str | None, kind: str | None,
                 limit: int, scope: ListFilter) -> list[dict]:
    rows = await uow.alerts.search(clinician_id=clinician_id, status=status, kind=kind, episode_id=None, limit=limit,
                                   scope=scope)
    return [alert_view(r) for r in rows]


async def alert(uow: OutcomesUnitOfWork, alert_id: UUID) -> dict:
    """One alert with its linked submissions and audit trail."""
    a = await uow.alerts.get(alert_id)
    if a is None:
        raise NotFound(f"no alert {alert_id}", field="alert_id")
    links = await uow.alerts.linked_submissions(alert_id)
    trail = await uow.alerts.audit_trail(alert_id)
    return {**alert_view(a),
            "linked_submissions": [{"submission_id": str(r["submission_id"]), "linked_at": _iso(r["linked_at"])}
                                   for r in links],
            "audit": [{"action": r["action"], "actor": r["actor"], "actor_role": r["actor_role"], "at": _iso(r["at"]),
                       "details": json.loads(r["details"]), "event_id": str(r["event_id"]) if r["event_id"] else None}
                      for r in trail]}


# ---- reports --------------------------------------------------------------------------------

async def cohort_report(uow: OutcomesUnitOfWork, *, group_by: str, template_id: str | None,
                        clinician_id: str | None, ended_from: datetime | None, ended_to: datetime | None,
                        scope: ListFilter) -> dict:
    rows = await uow.evaluations.rows(template_id=template_id, clinician_id=clinician_id, ended_from=ended_from,
                                      ended_to=ended_to, scope=scope)
    report = cohort.cohort_report(rows, group_by)
    report["filters"] = {"template_id": template_id, "clinician_id": clinician_id,
                         "ended_from": _iso(ended_from), "ended_to": _iso(ended_to)}
    report["definitions"] = (cohort.__doc__ or "").strip()
    return report


# ---- the catalogue --------------------------------------------------------------------------

def instruments(policy: OutcomesPolicy) -> dict:
    return {"instruments": [instrument_view(d) for d in policy.catalogue]}


def instrument(policy: OutcomesPolicy, code: str) -> dict:
    cat = policy.catalogue
    if code not in cat:
        raise NotFound(f"unknown instrument {code!r}", field="code")
    return instrument_view(cat.get(code))
