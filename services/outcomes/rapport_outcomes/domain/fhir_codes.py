"""Code systems and codes of the FHIR record (domain.md 5): the ones Rapport publishes (the IPT
focus problem areas, the outcome codes, the notification kinds and channels) and the external
codes it uses.

Every external code here was checked against a published source before it was written down (see
docs/outcomes.md "FHIR R4 export"); where none could be checked the export carries text only.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

LOCAL = "urn:rapport:fhir"
SNOMED = "http://snomed.info/sct"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
GOAL_PRIORITY = "http://terminology.hl7.org/CodeSystem/goal-priority"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
DATA_ABSENT_REASON = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
# The core extension linking a resource to its EpisodeOfCare (R4 has no CarePlan.episodeOfCare).
WORKFLOW_EPISODE_OF_CARE = "http://hl7.org/fhir/StructureDefinition/workflow-episodeOfCare"

PROBLEM_AREA_SYSTEM = f"{LOCAL}/CodeSystem/ipt-problem-area"
OUTCOME_SYSTEM = f"{LOCAL}/CodeSystem/outcome"
NOTIFICATION_KIND_SYSTEM = f"{LOCAL}/CodeSystem/notification-kind"
NOTIFICATION_CHANNEL_SYSTEM = f"{LOCAL}/CodeSystem/notification-channel"
# The notifier's error codes (rapport.notification.failed.v1 error_code): a Communication's
# statusReason; an open set the notifier owns, so not published as a complete CodeSystem.
NOTIFICATION_ERROR = f"{LOCAL}/notification-error"

# The programme's target condition (domain.md 1) → SNOMED CT (concept id, preferred term). Only
# concepts whose id and term were read in a published code list; substance use has none here
# (the concept found, 66214007, is named "Substance abuse" by some sources and "Substance-induced
# disorder" by another), so it is exported as text.
TARGET_CONDITION_SNOMED: Mapping[str, tuple[str, str]] = MappingProxyType({
    "depression": ("35489007", "Depressive disorder"),
    "anxiety": ("197480006", "Anxiety disorder"),
    "eating_disorder": ("72366004", "Eating disorder"),
})
TARGET_CONDITION_TEXT: Mapping[str, str] = MappingProxyType({
    "depression": "depression",
    "anxiety": "anxiety disorder",
    "eating_disorder": "eating disorder",
    "substance_use": "substance use disorder",
})

# domain.md 1: the four IPT focus problem areas and when each is chosen.
PROBLEM_AREAS: tuple[tuple[str, str, str], ...] = (
    ("grief", "Grief",
     "Onset or persistence is linked to the death of someone close (or the loss of a relationship)."),
    ("role_dispute", "Role dispute",
     "Conflict: non-reciprocal expectations in a significant relationship (partner, family, friend, work)."),
    ("role_transition", "Role transition",
     "Difficulty adapting to a life change (job loss, divorce, birth of a child, moving, illness)."),
    ("interpersonal_deficits", "Interpersonal deficits",
     "No clear recent event; long-standing difficulty starting or sustaining relationships (also called "
     "\"sensitivity\")."),
)

# Rapport's outcome codes: the change classification (domain.md 3.2, 3.4) and its parts.
OUTCOME_CODES: tuple[tuple[str, str, str], ...] = (
    ("reliable-change", "Reliable change from baseline",
     "An instrument's change from its first score in the episode (baseline) to its latest, classified by the "
     "instrument's reliable-change criterion."),
    ("end-of-course-outcome", "End-of-course outcome",
     "The episode's classification at the end of the course (NHS Talking Therapies definitions, domain.md 3.2)."),
    ("improved", "Reliable improvement", "A fall of at least the reliable-change threshold."),
    ("deteriorated", "Reliable deterioration", "A rise of at least the reliable-change threshold."),
    ("no-reliable-change", "No reliable change", "A change smaller than the reliable-change threshold."),
    ("no-criterion", "No reliable-change criterion",
     "The instrument has no reliable-change criterion (no published SD and reliability for a comparable "
     "clinical sample was found): its change is reported as the raw difference only."),
    ("criterion", "Reliable-change criterion", "How the instrument decides reliable change."),
    ("criterion-threshold", "Fixed threshold", "A fixed number of points (PHQ-9 6, GAD-7 4)."),
    ("criterion-jacobson-truax", "Jacobson-Truax",
     "1.96 x SD x sqrt(2) x sqrt(1 - r) from a published SD and reliability."),
    ("criterion-none", "None", "No reliable-change criterion: raw difference only."),
    ("instrument", "Instrument", "The instrument whose scores are compared."),
    ("measure-role", "Role of the measure", "How the measure enters the classification."),
    ("paired-measure", "Paired measure", "One of the measures the episode is classified on (PHQ-9 + GAD-7)."),
    ("condition-measure", "Condition-specific measure",
     "The target condition's own measure, reported beside the paired measures (domain.md 3.4)."),
    ("additional-measure", "Additional measure", "Collected, reported, not part of the classification."),
    ("baseline-total", "Baseline total", "The first score of the instrument in the episode."),
    ("final-total", "Final total", "The latest score of the instrument in the course."),
    ("change", "Change", "Final total minus baseline total; negative is a fall (improvement)."),
    ("threshold", "Reliable-change threshold", "The threshold in score points."),
    ("caseness-at-baseline", "Caseness at baseline", "At or above the instrument's caseness cut-off at baseline."),
    ("caseness-at-end", "Caseness at the end", "At or above the instrument's caseness cut-off at the end."),
    ("finished-course", "Finished course", "At least 2 attended treatment sessions (domain.md 3.2)."),
    ("counts-toward-recovery", "Counts toward recovery", "At caseness at baseline."),
    ("recovery", "Recovery", "At caseness at baseline and not at caseness at the end."),
    ("reliable-improvement", "Reliable improvement",
     "Reliable improvement on at least one paired measure and reliable deterioration on none."),
    ("reliable-deterioration", "Reliable deterioration", "Reliable deterioration on any paired measure."),
    ("reliable-recovery", "Reliable recovery", "Reliable improvement and recovery."),
    ("response", "Response", "A fall of at least 50% in PHQ-9 from baseline."),
    ("remission", "Remission", "PHQ-9 below 5 at the end."),
    ("attended-sessions", "Attended sessions", "Sessions of the course attended."),
    ("treatment-sessions", "Attended treatment sessions", "Attended sessions less those of the assessment phase."),
    ("ipt-course", "IPT course", "A time-limited course of interpersonal psychotherapy (domain.md 2)."),
    ("ipt-phase", "IPT course phase", "One phase of an IPT course: initial, middle, termination (domain.md 2)."),
)
# The notifier's notification kinds (rapport.notification.*.v1 ``kind``; docs/notifier.md): a
# Communication's category. A kind not listed here is exported as text only.
NOTIFICATION_KINDS: tuple[tuple[str, str, str], ...] = (
    ("session_reminder", "Session reminder", "A reminder to the patient of an upcoming session."),
    ("questionnaire_request", "Questionnaire request",
     "A request to the patient to complete the questionnaires due before a session (domain.md 3.4)."),
    ("questionnaire_reminder", "Questionnaire reminder", "A reminder of a questionnaire request not yet completed."),
    ("safety_alert", "Safety alert page",
     "A safety alert (a positive PHQ-9 item 9) paged to the clinician, and out of hours to the on-call clinician."),
    ("safety_escalation", "Safety alert escalation",
     "A safety alert not acknowledged in time, paged to the on-call clinician."),
    ("review_notice", "Review notice",
     "A clinical review due (mid-course review, reliable deterioration, initial-phase checklist) sent to the "
     "clinician."),
    ("phase_change", "Phase change notice", "The course moved to its next phase."),
    ("course_planned", "Course planned notice", "A course was planned from its template."),
    ("course_summary", "Course summary", "The end-of-course summary sent to the clinician."),
    ("referrer_summary", "Referrer summary",
     "The end-of-course summary sent to the referrer, when the patient consented to it at intake."),
    ("partner_event", "Partner event", "An event delivered to a partner's webhook subscription."),
)
# The notifier's delivery channels: a Communication's medium. Rapport's own codes: the HL7
# v3-ParticipationMode codes could not be checked against a published source here.
NOTIFICATION_CHANNELS: tuple[tuple[str, str, str], ...] = (
    ("email", "Email", "Sent by email."),
    ("sms", "SMS", "Sent as a text message to a mobile phone."),
    ("webhook", "Webhook", "Posted to a partner's HTTPS endpoint (a signed webhook)."),
    ("log", "Log", "Written to the service log only (development and test deployments: nothing leaves)."),
)

OUTCOME_DISPLAY: Mapping[str, str] = MappingProxyType({code: display for code, display, _ in OUTCOME_CODES})


def code_system(*, system: str, resource_id: str, name: str, title: str, description: str,
                concepts: tuple[tuple[str, str, str], ...]) -> dict:
    return {
        "resourceType": "CodeSystem", "id": resource_id, "url": system, "version": "1", "name": name,
        "title": title, "status": "active", "experimental": False, "publisher": "Rapport", "description": description,
        "caseSensitive": True, "content": "complete", "count": len(concepts),
        "concept": [{"code": code, "display": display, "definition": definition}
                    for code, display, definition in concepts],
    }


def outcome_coding(code: str) -> dict:
    return {"system": OUTCOME_SYSTEM, "code": code, "display": OUTCOME_DISPLAY[code]}


def _coding_in(system: str, concepts: tuple[tuple[str, str, str], ...], code: str) -> dict:
    """A CodeableConcept in one of Rapport's systems; text only for a code the system lacks."""
    display = {c: d for c, d, _ in concepts}.get(code)
    if display is None:
        return {"text": code.replace("_", " ")}
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


def notification_kind(code: str) -> dict:
    return _coding_in(NOTIFICATION_KIND_SYSTEM, NOTIFICATION_KINDS, code)


def notification_channel(code: str) -> dict:
    return _coding_in(NOTIFICATION_CHANNEL_SYSTEM, NOTIFICATION_CHANNELS, code)
