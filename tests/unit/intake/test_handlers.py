"""Intake's service layer with a fake unit of work (no Postgres): commands go through the
handler registry as the message bus sends them; the tests look at the events emitted and what
the repositories hold."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from rapport_shared.contracts import IntakeCompletedV1, IntakeDeclinedV1
from rapport_shared.errors import Conflict, Invalid, NotFound
from rapport_intake.domain import commands
from rapport_intake.domain.commands import Actor
from rapport_intake.domain.model import Status
from rapport_intake.service_layer import views
from rapport_intake.service_layer.handlers import handlers
from rapport_intake.settings import IntakeSettings

from fakes import FakeIntakeUnitOfWork
from intake_builders import AVAILABILITY, PHQ9_ITEM9, PHQ9_OK, focus, inventory

pytestmark = pytest.mark.unit

ORG = "org-test"
IC = Actor("ic-1", ("intake_clinician",), ORG)
ADMIN = Actor("dpo-1", ("admin",), ORG)


async def run(uow: FakeIntakeUnitOfWork, cmd):
    """As ``runtime.bus.handle``: the one handler registered for the command's type."""
    return await handlers.dispatch(cmd, uow)


async def open_referral(uow: FakeIntakeUnitOfWork, actor: Actor = IC, *, person_id: str = "P-7f3a9c",
                        client_referral_id: str | None = None, condition: str = "depression"):
    body = commands.OpenReferral(person_id=person_id, referral_source="gp", target_condition=condition,
                                 client_referral_id=client_referral_id)
    return await run(uow, commands.OpenReferralCommand(actor=actor, body=body))


def baseline(answers=PHQ9_OK) -> commands.SubmitBaseline:
    return commands.SubmitBaseline(instrument="phq9", answers=answers)


def every_part(**over) -> commands.CompleteIntake:
    parts = dict(consent=commands.RecordConsent(given=True, method="written"), baseline=[baseline()],
                 inventory=inventory(), focus=focus(), template_id="ipt-standard", clinician_id="clin-1",
                 availability=commands.RecordAvailability.model_validate(AVAILABILITY.model_dump()),
                 eligibility=commands.RecordEligibility(age_years=30))
    return commands.CompleteIntake(**{**parts, **over})


def complete(episode_id, body: commands.CompleteIntake, actor: Actor = IC) -> commands.CompleteIntakeCommand:
    return commands.CompleteIntakeCommand(episode_id=episode_id, actor=actor, body=body)


# ---- opening -----------------------------------------------------------------------------

async def test_opening_a_referral_stores_it_in_the_openers_organisation_and_audits_it():
    uow = FakeIntakeUnitOfWork()
    opened = await open_referral(uow)
    assert not opened.replayed
    stored = await uow.referrals.get(opened.referral.episode_id)
    assert (stored.status, stored.organisation_id, stored.intake_clinician_id) == (Status.open, ORG, "ic-1")
    assert stored.created_at == uow.now()
    assert uow.audit.actions() == ["referral.opened"]
    assert uow.emitted == []  # opening announces nothing


async def test_a_partner_opening_a_referral_is_not_its_intake_clinician():
    uow = FakeIntakeUnitOfWork()
    opened = await open_referral(uow, Actor("partner-1", ("partner",), ORG))
    assert opened.referral.intake_clinician_id is None


async def test_the_same_client_referral_id_again_answers_the_referral_it_opened():
    uow = FakeIntakeUnitOfWork()
    first = await open_referral(uow, client_referral_id="form-1")
    again = await open_referral(uow, client_referral_id="form-1")
    assert again.replayed and again.referral.episode_id == first.referral.episode_id
    assert len(uow.referrals.rows) == 1
    assert uow.audit.actions() == ["referral.opened", "referral.open_repeated"]


async def test_a_client_referral_id_reused_for_other_content_is_refused_naming_the_referral():
    uow = FakeIntakeUnitOfWork()
    first = await open_referral(uow, client_referral_id="form-1")
    with pytest.raises(Conflict) as refused:
        await open_referral(uow, client_referral_id="form-1", person_id="P-other1")
    assert refused.value.field == "client_referral_id"
    assert refused.value.extra == {"episode_id": str(first.referral.episode_id)}
    assert len(uow.referrals.rows) == 1


async def test_a_client_referral_id_of_another_organisation_never_names_its_referral():
    uow = FakeIntakeUnitOfWork()
    await open_referral(uow, client_referral_id="form-1")
    with pytest.raises(Conflict) as refused:
        await open_referral(uow, Actor("ic-1", ("intake_clinician",), "org-other"), client_referral_id="form-1")
    assert refused.value.extra == {}


@pytest.mark.parametrize("org", [None, "", "not a code"])
async def test_a_token_without_a_usable_organisation_cannot_open_a_referral(org):
    uow = FakeIntakeUnitOfWork()
    with pytest.raises(Invalid) as refused:
        await open_referral(uow, Actor("ic-1", ("intake_clinician",), org))
    assert refused.value.field == "org"
    assert uow.referrals.rows == {} and uow.audit.entries == []


# ---- the assessment steps ----------------------------------------------------------------

async def test_each_step_is_stored_on_the_locked_referral_and_audited():
    uow = FakeIntakeUnitOfWork()
    episode = (await open_referral(uow)).referral.episode_id
    steps = [
        commands.RecordConsentCommand(episode_id=episode, actor=IC,
                                      body=commands.RecordConsent(given=True, method="written")),
        commands.SubmitBaselineCommand(episode_id=episode, actor=IC, body=baseline()),
        commands.RecordInventoryCommand(episode_id=episode, actor=IC, body=inventory()),
        commands.RecordFocusCommand(episode_id=episode, actor=IC, body=focus()),
        commands.ChooseTemplateCommand(episode_id=episode, actor=IC,
                                       body=commands.ChooseTemplate(template_id="ipt-standard")),
        commands.AssignClinicianCommand(episode_id=episode, actor=IC,
                                        body=commands.AssignClinician(clinician_id="clin-1")),
        commands.RecordAvailabilityCommand(
            episode_id=episode, actor=IC,
            body=commands.RecordAvailability.model_validate(AVAILABILITY.model_dump())),
    ]
    for step in steps:
        answered = await run(uow, step)
        assert answered.episode_id == episode
    stored = await uow.referrals.get(episode)
    assert stored.consent.given and stored.consent.recorded_by == "ic-1"
    assert set(stored.baseline) == {"phq9"} and stored.baseline["phq9"].total == 18
    assert stored.inventory.people[0].role == "partner"
    assert (stored.focus.primary.value, stored.template_id, stored.clinician_id) == ("role_dispute", "ipt-standard",
                                                                                     "clin-1")
    assert stored.availability.timezone == "Europe/London"
    assert stored.missing_for_completion(IntakeSettings().rules()) == ["eligibility"]
    assert uow.referrals.locked.count(episode) == len(steps)
    assert uow.audit.actions()[1:] == ["consent.recorded", "baseline.recorded", "inventory.recorded",
                                       "focus.recorded", "template.chosen", "clinician.assigned",
                                       "availability.recorded"]
    assert uow.emitted == []


async def test_contact_details_are_stored_and_queued_for_the_private_topic():
    uow = FakeIntakeUnitOfWork()
    opened = (await open_referral(uow)).referral
    body = commands.RecordContact(email="ada@example.org", channel_consent={"email": True}, preferred_channel="email")
    await run(uow, commands.RecordContactCommand(episode_id=opened.episode_id, actor=IC, body=body))
    assert (await uow.contacts.get(opened.person_id)).email == "ada@example.org"
    assert uow.contacts.publications == [opened.person_id] and uow.contacts.notified == 1
    assert uow.audit.entries[-1].detail == {"fields": ["channel_consent", "email", "preferred_channel"]}
    assert uow.emitted == []  # nothing on a shared topic for a contact change
    read = await views.contact(uow, opened.episode_id, IC)
    assert read.email == "ada@example.org" and uow.audit.actions()[-1] == "contact.read"


async def test_settings_decide_what_a_step_accepts():
    uow = FakeIntakeUnitOfWork(settings=IntakeSettings(allow_secondary_focus=False, session_minutes=240))
    episode = (await open_referral(uow)).referral.episode_id
    with pytest.raises(Invalid) as refused:
        await run(uow, commands.RecordFocusCommand(episode_id=episode, actor=IC,
                                                   body=focus(secondary="grief")))
    assert refused.value.field == "secondary"
    with pytest.raises(Invalid) as refused:  # a 3-hour slot cannot hold a 4-hour session
        await run(uow, commands.RecordAvailabilityCommand(
            episode_id=episode, actor=IC, body=commands.RecordAvailability.model_validate(AVAILABILITY.model_dump())))
    assert refused.value.field == "slots"
    stored = await uow.referrals.get(episode)
    assert stored.focus is None and stored.availability is None


async def test_a_step_on_an_unknown_referral_is_not_found():
    uow = FakeIntakeUnitOfWork()
    with pytest.raises(NotFound) as refused:
        await run(uow, commands.RecordConsentCommand(episode_id=uuid.uuid4(), actor=IC,
                                                     body=commands.RecordConsent(given=True, method="verbal")))
    assert refused.value.field == "episode_id"


# ---- ending ------------------------------------------------------------------------------

async def test_completing_with_every_part_emits_intake_completed_once():
    uow = FakeIntakeUnitOfWork()
    episode = (await open_referral(uow)).referral.episode_id
    done = await run(uow, complete(episode, every_part()))
    assert done.status == Status.completed
    [event] = uow.of_type(IntakeCompletedV1)
    assert (event.episode_id, event.person_id, event.template_id, event.clinician_id) == (
        episode, "P-7f3a9c", "ipt-standard", "clin-1")
    assert event.organisation_id == ORG and event.intake_clinician_id == "ic-1"
    assert [b.instrument for b in event.baseline_scores] == ["phq9"]
    stored = await uow.referrals.get(episode)
    assert stored.status == Status.completed and str(stored.completed_event_id) == uow.events[0].id
    assert "referral.completed" in uow.audit.actions()

    again = await run(uow, complete(episode, commands.CompleteIntake()))
    assert again.completed_event_id == stored.completed_event_id
    assert len(uow.emitted) == 1 and uow.audit.actions()[-1] == "referral.complete_repeated"


async def test_consent_to_the_referrer_summary_is_audited_and_carried_on_the_completed_event():
    uow = FakeIntakeUnitOfWork()
    episode = (await open_referral(uow)).referral.episode_id
    consent = commands.RecordConsent(given=True, method="verbal", share_outcomes_with_referrer=True)
    await run(uow, commands.RecordConsentCommand(episode_id=episode, actor=IC, body=consent))
    assert uow.audit.entries[-1].detail == {"given": True, "method": "verbal", "share_outcomes_with_referrer": True}
    await run(uow, complete(episode, every_part(consent=None)))
    [event] = uow.of_type(IntakeCompletedV1)
    assert event.share_outcomes_with_referrer is True

    uow = FakeIntakeUnitOfWork()  # not asked: not given
    episode = (await open_referral(uow)).referral.episode_id
    await run(uow, complete(episode, every_part()))
    [event] = uow.of_type(IntakeCompletedV1)
    assert event.share_outcomes_with_referrer is False


async def test_completing_with_parts_missing_is_refused_listing_them_and_writes_nothing():
    uow = FakeIntakeUnitOfWork()
    episode = (await open_referral(uow)).referral.episode_id
    with pytest.raises(Conflict) as refused:
        await run(uow, complete(episode, commands.CompleteIntake(template_id="ipt-standard")))
    assert refused.value.extra["missing"] == ["consent", "baseline.phq9", "inventory", "focus", "clinician_id",
                                              "availability", "eligibility"]
    assert (await uow.referrals.get(episode)).template_id is None  # a real unit rolls back; here: never saved
    assert uow.emitted == []


async def test_a_positive_safety_item_needs_a_risk_review_before_completion():
    uow = FakeIntakeUnitOfWork()
    episode = (await open_referral(uow)).referral.episode_id
    with pytest.raises(Conflict) as refused:
        await run(uow, complete(episode, every_part(baseline=[baseline(PHQ9_ITEM9)])))
    assert refused.value.extra["missing"] == ["risk_review"]
    uow.clock.advance(timedelta(minutes=5))
    review = commands.RecordRiskReview(decision="proceed", note="safety plan agreed")
    await run(uow, complete(episode, every_part(baseline=[baseline(PHQ9_ITEM9)], risk_review=review)))
    [event] = uow.of_type(IntakeCompletedV1)
    assert event.risk_review.decision == "proceed"
    assert [r.note for r in uow.referrals.reviews[episode]] == ["safety plan agreed"]


async def test_an_exclusion_declines_the_referral_and_emits_intake_declined():
    uow = FakeIntakeUnitOfWork()
    episode = (await open_referral(uow)).referral.episode_id
    declined = await run(uow, complete(episode, every_part(
        eligibility=commands.RecordEligibility(age_years=30, exclusions=["active_psychosis"]))))
    assert declined.status == Status.declined  # the HTTP edge answers 409; the decline is kept
    [event] = uow.emitted
    assert isinstance(event, IntakeDeclinedV1) and event.reason_code == declined.decline_reasons[0]
    assert (await uow.referrals.get(episode)).status == Status.declined
    with pytest.raises(Conflict) as refused:  # declined is final
        await run(uow, commands.RecordConsentCommand(episode_id=episode, actor=IC,
                                                     body=commands.RecordConsent(given=True, method="written")))
    assert refused.value.field == "status"


async def test_declining_by_hand_is_idempotent_and_refuses_unknown_reasons():
    uow = FakeIntakeUnitOfWork()
    episode = (await open_referral(uow)).referral.episode_id
    reason = IntakeSettings().rules().decline_reasons[0]
    with pytest.raises(Invalid):
        await run(uow, commands.DeclineCommand(episode_id=episode, actor=IC, body=commands.Decline(reason_code="nope")))
    for _ in range(2):
        await run(uow, commands.DeclineCommand(episode_id=episode, actor=IC,
                                               body=commands.Decline(reason_code=reason)))
    assert [type(e) for e in uow.emitted] == [IntakeDeclinedV1]
    assert uow.audit.actions()[-2:] == ["referral.declined", "referral.decline_repeated"]


# ---- reads, erasure ----------------------------------------------------------------------

async def test_the_worklist_is_narrowed_to_the_callers_reach_and_audited():
    from rapport_shared.http.access import ListFilter

    uow = FakeIntakeUnitOfWork()
    mine = (await open_referral(uow)).referral.episode_id
    uow.clock.advance(timedelta(minutes=1))
    await open_referral(uow, Actor("ic-2", ("intake_clinician",), ORG), person_id="P-second1")
    uow.clock.advance(timedelta(minutes=1))
    await open_referral(uow, Actor("ic-3", ("intake_clinician",), "org-other"), person_id="P-third01")

    listed = await views.referrals(uow, IC, status=None, clinician_id=None, after=(None, None), limit=50,
                                   reach=ListFilter(organisation_id=ORG, assigned_to="ic-1"))
    assert [r.episode_id for r in listed] == [mine]
    everyone = await views.referrals(uow, IC, status="open", clinician_id=None, after=(None, None), limit=2,
                                     reach=ListFilter(organisation_id=ORG))
    assert len(everyone) == 2
    assert await views.referrals(uow, IC, status=None, clinician_id=None, after=(None, None), limit=50,
                                 reach=ListFilter(nothing=True)) == []
    assert uow.audit.actions()[-3:] == ["referral.listed"] * 3
    assert uow.audit.entries[-3].detail["episodes"] == [str(mine)]


async def test_erasure_removes_contact_and_free_text_and_queues_the_tombstone():
    uow = FakeIntakeUnitOfWork()
    episode = (await open_referral(uow)).referral.episode_id
    await run(uow, complete(episode, every_part(
        baseline=[baseline(PHQ9_ITEM9)], risk_review=commands.RecordRiskReview(decision="proceed", note="sister"),
        contact=commands.RecordContact(email="ada@example.org", channel_consent={"email": True}))))
    uow.contacts.live_keys.add("P-7f3a9c")  # the relay created the person's data key

    erased = await run(uow, commands.ErasePersonCommand(person_id="P-7f3a9c", actor=ADMIN))
    assert erased | {"erased_at": None} == {"person_id": "P-7f3a9c", "erased_at": None, "referrals": 1,
                                             "contact_erased": True, "tombstone": "queued"}
    stored = await uow.referrals.get(episode)
    assert stored.focus.rationale is None and stored.inventory.notes is None
    assert stored.focus.primary.value == "role_dispute"  # coded facts stay
    assert [r.note for r in stored.risk_reviews] == [None]
    assert await uow.contacts.get("P-7f3a9c") is None and uow.contacts.live_keys == set()
    assert uow.contacts.publications[-1] == "P-7f3a9c"
    [erasure] = uow.contacts.erasures
    assert (erasure.by, erasure.referrals, erasure.contact, erasure.organisation_id) == ("dpo-1", 1, True, ORG)
    assert uow.audit.entries[-1].action == "person.erased" and uow.audit.entries[-1].detail["keys_destroyed"] == 1


async def test_erasure_of_a_person_outside_the_callers_organisation_is_not_found():
    uow = FakeIntakeUnitOfWork()
    await open_referral(uow)
    with pytest.raises(NotFound) as refused:
        await run(uow, commands.ErasePersonCommand(person_id="P-7f3a9c", actor=Actor("dpo-2", ("admin",), "org-other")))
    assert refused.value.field == "person_id"
    assert uow.contacts.erasures == [] and uow.contacts.publications == []


async def test_republishing_queues_every_contact():
    uow = FakeIntakeUnitOfWork()
    for person in ("P-aaaa1111", "P-bbbb2222"):
        episode = (await open_referral(uow, person_id=person)).referral.episode_id
        await run(uow, commands.RecordContactCommand(episode_id=episode, actor=IC,
                                                     body=commands.RecordContact(name="someone")))
    uow.contacts.publications.clear()
    assert await run(uow, commands.RepublishContactsCommand(actor=ADMIN)) == 2
    assert sorted(uow.contacts.publications) == ["P-aaaa1111", "P-bbbb2222"]
    assert uow.audit.entries[-1].detail == {"contacts": 2}


def test_every_command_has_exactly_one_handler():
    bus_commands = {c for c in vars(commands).values() if isinstance(c, type) and c.__name__.endswith("Command")
                    and c is not commands.ReferralCommand}
    assert bus_commands == set(handlers.message_types)
