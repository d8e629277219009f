"""The notifier's unit of work without Postgres: in-memory repositories with the methods of the
real ones (``rapport_notifier.adapters``), rows as the dicts those return. One fake unit stands
for the database across the messages of a test (``handle``/``fire`` reuse it)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from rapport_notifier.service_layer.handlers import handlers
from rapport_notifier.service_layer.unit_of_work import SettingsView
from rapport_notifier.settings import NotifierSettings
from rapport_shared.envelope import CloudEvent, new_event
from rapport_shared.timers import Timer

try:  # test support is moving to its own package (issue 12)
    from rapport_testing.fake_uow import FakeUnitOfWork
except ImportError:  # pragma: no cover
    from rapport_testing.fake_uow import FakeUnitOfWork


def settings(**overrides) -> NotifierSettings:
    return NotifierSettings(**{"service_name": "notifier", "db_schema": "notifier", **overrides})


class FakeEpisodes:
    def __init__(self) -> None:
        self.rows: dict[uuid.UUID, dict] = {}

    def _row(self, episode_id) -> dict:
        return self.rows.setdefault(episode_id, {"episode_id": episode_id, "person_id": None, "clinician_id": None,
                                                 "course_id": None, "instruments": None, "organisation_id": None,
                                                 "ended_at": None, "target_condition": None,
                                                 "contracted_sessions": None, "contracted_at": None,
                                                 "share_outcomes_with_referrer": False, "referral_source": None})

    async def organisation_of(self, episode_id, default):
        row = self.rows.get(episode_id)
        return (row and row["organisation_id"]) or default

    async def clinician_of(self, episode_id):
        row = self.rows.get(episode_id)
        return row and row["clinician_id"]

    async def record_intake(self, episode_id, person_id, clinician_id, instruments, organisation_id, default_org,
                            target_condition=None, share_outcomes_with_referrer=False, referral_source=None):
        known = episode_id in self.rows
        row = self._row(episode_id)
        row.update(person_id=person_id, clinician_id=clinician_id,
                   share_outcomes_with_referrer=share_outcomes_with_referrer)
        row["referral_source"] = referral_source or row["referral_source"]
        row["instruments"] = instruments if instruments is not None else row["instruments"]
        row["target_condition"] = target_condition or row["target_condition"]
        row["organisation_id"] = organisation_id or (row["organisation_id"] if known else None) or default_org

    async def referrer(self, episode_id):
        row = self.rows.get(episode_id)
        return row and {k: row[k] for k in ("person_id", "organisation_id", "share_outcomes_with_referrer",
                                             "referral_source", "ended_at")}

    async def record_declined(self, episode_id, person_id, organisation_id):
        known = episode_id in self.rows
        row = self._row(episode_id)
        if not known:
            row["person_id"] = person_id
        row["organisation_id"] = organisation_id

    async def record_planned(self, episode_id, person_id, clinician_id, course_id, default_org):
        if episode_id not in self.rows:
            self._row(episode_id)["organisation_id"] = default_org
        self.rows[episode_id].update(person_id=person_id, clinician_id=clinician_id, course_id=course_id)

    async def set_contract(self, episode_id, contracted_sessions, at):
        row = self.rows.get(episode_id)
        if row is not None and (row["contracted_at"] is None or row["contracted_at"] <= at):
            row.update(contracted_sessions=contracted_sessions, contracted_at=at)

    async def ensure(self, episode_id, default_org):
        if episode_id not in self.rows:
            self._row(episode_id)["organisation_id"] = default_org

    async def end(self, episode_id, ended_at):
        if episode_id in self.rows:
            self.rows[episode_id]["ended_at"] = ended_at


class FakeSessions:
    def __init__(self, episodes: FakeEpisodes) -> None:
        self.episodes = episodes
        self.rows: dict[uuid.UUID, dict] = {}
        self.requests: dict[uuid.UUID, dict] = {}

    async def get(self, session_id):
        row = self.rows.get(session_id)
        return dict(row) if row else None

    async def put(self, *, session_id, episode_id, number, starts_at, cause_event_id, changed_at):
        self.rows[session_id] = {"session_id": session_id, "episode_id": episode_id, "number": number,
                                 "starts_at": starts_at, "status": "scheduled", "cause_event_id": cause_event_id,
                                 "changed_at": changed_at}

    async def known(self, session_ids):
        return {s for s in session_ids if s in self.rows}

    async def add_many(self, *, episode_id, sessions, cause_event_id, changed_at):
        for session_id, number, starts_at in sessions:
            if session_id not in self.rows:
                await self.put(session_id=session_id, episode_id=episode_id, number=number, starts_at=starts_at,
                               cause_event_id=cause_event_id, changed_at=changed_at)

    async def set_status(self, session_id, status, at):
        row = self.rows.get(session_id)
        if row is None or (row["changed_at"] is not None and row["changed_at"] > at):
            return False
        row.update(status=status, changed_at=at)
        return True

    async def exists(self, session_id):
        return session_id in self.rows

    async def ids_of_episode(self, episode_id):
        return [s for s, row in self.rows.items() if row["episode_id"] == episode_id]

    async def with_episode(self, session_id):
        row = self.rows.get(session_id)
        episode = row and self.episodes.rows.get(row["episode_id"])
        if episode is None:
            return None
        return {**row, "person_id": episode["person_id"], "instruments": episode["instruments"],
                "target_condition": episode["target_condition"],
                "contracted_sessions": episode["contracted_sessions"], "ended_at": episode["ended_at"]}

    async def questionnaire_request(self, session_id):
        row = self.requests.get(session_id)
        return dict(row) if row else None

    async def add_questionnaire_request(self, session_id, episode_id, requested_at, expires_at, instruments=None):
        if session_id in self.requests:
            return False
        self.requests[session_id] = {"session_id": session_id, "episode_id": episode_id, "requested_at": requested_at,
                                     "expires_at": expires_at, "answered_at": None,
                                     "instruments": list(instruments) if instruments is not None else None}
        return True

    async def set_request_expiry(self, session_id, expires_at):
        if session_id in self.requests:
            self.requests[session_id]["expires_at"] = expires_at

    async def mark_answered(self, episode_id, at):
        out = []
        for r in self.requests.values():
            if r["episode_id"] == episode_id and r["answered_at"] is None and r["requested_at"] <= at:
                r["answered_at"] = at
                out.append(r["session_id"])
        return out


class FakeAlerts:
    def __init__(self) -> None:
        self.rows: dict[uuid.UUID, dict] = {}

    async def add(self, *, alert_id, episode_id, kind, clinician_id, raised_at):
        if alert_id in self.rows:
            return False
        self.rows[alert_id] = {"alert_id": alert_id, "episode_id": episode_id, "kind": kind,
                               "clinician_id": clinician_id, "raised_at": raised_at, "acknowledged_at": None,
                               "acknowledged_by": None, "escalated_at": None, "resolved_at": None,
                               "out_of_hours": False}
        return True

    async def get(self, alert_id):
        row = self.rows.get(alert_id)
        return dict(row) if row else None

    async def mark_escalated(self, alert_id, at):
        self.rows[alert_id]["escalated_at"] = at

    async def mark_out_of_hours(self, alert_id):
        self.rows[alert_id]["out_of_hours"] = True

    async def resolve(self, alert_id, resolved_at):
        if alert_id in self.rows:
            self.rows[alert_id]["resolved_at"] = resolved_at

    async def acknowledge(self, alert_id, at, by):
        row = self.rows.get(alert_id)
        if row is None:
            return None
        row["acknowledged_at"] = row["acknowledged_at"] or at
        row["acknowledged_by"] = row["acknowledged_by"] or by
        return dict(row)


class FakeClinicians:
    def __init__(self, episodes: FakeEpisodes) -> None:
        self.episodes = episodes
        self.rows: dict[str, dict] = {}
        self.locked: list[str] = []

    async def get(self, clinician_id):
        row = self.rows.get(clinician_id)
        return dict(row) if row else None

    async def working_hours(self, clinician_id):
        row = self.rows.get(clinician_id)
        return row and row["working_hours"]

    async def lock(self, clinician_id):
        self.locked.append(clinician_id)

    async def organisations(self, clinician_id, default):
        row = self.rows.get(clinician_id)
        if row is not None and (row["organisation_id"] or default):
            return {row["organisation_id"] or default}
        return {e["organisation_id"] or default for e in self.episodes.rows.values()
                if e["clinician_id"] == clinician_id and (e["organisation_id"] or default)}

    async def put(self, *, clinician_id, email, phone, language, channels, working_hours, organisation_id):
        self.rows[clinician_id] = {"clinician_id": clinician_id, "email": email, "phone": phone, "language": language,
                                   "channels": list(channels), "working_hours": working_hours,
                                   "organisation_id": organisation_id}

    async def delete(self, clinician_id):
        return self.rows.pop(clinician_id, None) is not None

    async def of_organisation(self, organisation_id, default):
        return [dict(r) for _, r in sorted(self.rows.items())
                if organisation_id is None or (r["organisation_id"] or default) == organisation_id]


class FakeOncall:
    def __init__(self) -> None:
        self.slots: list[dict] = []

    async def at(self, at, org, default):
        return sorted({s["clinician_id"] for s in self.slots if s["starts_at"] <= at < s["ends_at"]
                       and (s["organisation_id"] or default) == org})

    async def replace(self, org, default, slots):
        self.slots = [s for s in self.slots if (s["organisation_id"] or default) != org]
        self.slots += [{"clinician_id": c, "starts_at": a, "ends_at": b, "organisation_id": org} for c, a, b in slots]

    async def of_organisation(self, organisation_id, default):
        return sorted((dict(s) for s in self.slots
                       if organisation_id is None or (s["organisation_id"] or default) == organisation_id),
                      key=lambda s: s["starts_at"])


class FakePatients:
    def __init__(self) -> None:
        self.rows: dict[str, dict] = {}
        self.prefs: dict[str, dict] = {}

    def add(self, person_id, *, email=None, phone=None, consent=None, preferred=None, quiet_hours=None, language=None):
        """What the private contacts topic would have written."""
        self.rows[person_id] = {"person_id": person_id, "email": email, "phone": phone,
                                "channel_consent": consent or {}, "preferred_channel": preferred,
                                "quiet_hours": quiet_hours, "language": language}

    async def get(self, person_id):
        row = self.rows.get(person_id)
        return dict(row) if row else None

    async def preferences(self, person_id):
        row = self.prefs.get(person_id)
        return dict(row) if row else None

    async def quiet_hours(self, person_id):
        pref = self.prefs.get(person_id)
        if pref is not None and pref["quiet_hours"] is not None:
            return pref["quiet_hours"]
        row = self.rows.get(person_id)
        return row and row["quiet_hours"]

    async def set_preferences(self, person_id, language, quiet_hours):
        self.prefs[person_id] = {"person_id": person_id, "language": language, "quiet_hours": quiet_hours}

    async def erase(self, person_id):
        a, b = self.rows.pop(person_id, None), self.prefs.pop(person_id, None)
        return a is not None or b is not None


class FakeSubscriptions:
    def __init__(self, clock) -> None:
        self.clock = clock
        self.rows: dict[uuid.UUID, dict] = {}

    async def matching(self, event_type, at, org, default):
        return sorted(s for s, r in self.rows.items() if r["deleted_at"] is None and event_type in r["event_types"]
                      and (r["effective_from"] is None or r["effective_from"] <= at)
                      and (r["organisation_id"] or default) == org)

    async def of_organisation(self, org, at, default):
        return sorted(s for s, r in self.rows.items() if r["deleted_at"] is None
                      and (r["effective_from"] is None or r["effective_from"] <= at)
                      and (r["organisation_id"] or default) == org)

    async def get(self, subscription_id):
        row = self.rows.get(subscription_id)
        return dict(row) if row else None

    async def add(self, *, partner_id, url, secret, event_types, effective_from, organisation_id):
        sid = uuid.uuid4()
        self.rows[sid] = {"subscription_id": sid, "partner_id": partner_id, "url": url, "secret": secret,
                          "event_types": list(event_types), "created_at": self.clock.now(),
                          "effective_from": effective_from, "organisation_id": organisation_id, "deleted_at": None}
        return dict(self.rows[sid])

    async def of_partner(self, partner_id, org):
        return [dict(r) for r in sorted(self.rows.values(), key=lambda r: r["created_at"])
                if r["partner_id"] == partner_id and r["deleted_at"] is None and r["organisation_id"] in (org, None)]

    async def delete(self, subscription_id, partner_id, org):
        r = self.rows.get(subscription_id)
        if r is None or r["partner_id"] != partner_id or r["deleted_at"] is not None or r["organisation_id"] not in (org, None):
            return False
        r["deleted_at"] = self.clock.now()
        return True


class FakeDeliveries:
    def __init__(self) -> None:
        self.rows: dict[str, dict] = {}  # by idempotency key, in the order written
        self.wakes = 0

    async def add(self, **row):
        if row["idem_key"] in self.rows:
            return False
        self.rows[row["idem_key"]] = dict(row)
        return True

    async def wake_sender(self):
        self.wakes += 1

    async def cancel_unsent_for_alert(self, alert_id, at, reason):
        for r in self.rows.values():
            if r["alert_id"] == alert_id and r["status"] == "ready":
                r.update(status="cancelled", finished_at=at, last_error=reason)

    async def scrub_errors(self, recipient_ref):
        for r in self.rows.values():
            if r["recipient_ref"] == recipient_ref and r["last_error"]:
                r["last_error"] = r["last_error"].split(":", 1)[0]

    def of(self, kind: str | None = None, **where) -> list[dict]:
        """The rows written (of ``kind``, matching ``where``), in order."""
        return [r for r in self.rows.values() if (kind is None or r["kind"] == kind)
                and all(r[k] == v for k, v in where.items())]


class FakePlans:
    """Live plans by (kind, key): due time and payload."""

    def __init__(self) -> None:
        self.live: dict[tuple[str, str], tuple[datetime, dict]] = {}
        self.cancelled: list[tuple[str, str]] = []

    async def schedule(self, kind, key, due_at, *, now, payload=None):
        self.live[(kind, key)] = (due_at, dict(payload or {}))

    async def schedule_many(self, plans, *, now):
        for p in plans:
            await self.schedule(p.kind, p.key, p.due_at, now=now, payload=p.payload)

    async def cancel(self, kind, key, *, now):
        if self.live.pop((kind, key), None) is None:
            return False
        self.cancelled.append((kind, key))
        return True

    def due(self, kind: str, key: str) -> datetime | None:
        plan = self.live.get((kind, key))
        return plan and plan[0]


@dataclass
class FakeNotifierUnitOfWork(SettingsView, FakeUnitOfWork):
    def __post_init__(self) -> None:
        if self.settings is None:
            self.settings = settings()
        self.episodes = FakeEpisodes()
        self.sessions = FakeSessions(self.episodes)
        self.alerts = FakeAlerts()
        self.clinicians = FakeClinicians(self.episodes)
        self.oncall = FakeOncall()
        self.patients = FakePatients()
        self.subscriptions = FakeSubscriptions(self.clock)
        self.deliveries = FakeDeliveries()
        self.timers = FakePlans()

    # ------------------------------------------------------------ driving it
    async def handle(self, data, *, at: datetime | None = None, event_id: str | None = None) -> CloudEvent:
        """One consumed event, as the consumer hands it over (``cause`` = its envelope)."""
        self.cause = new_event(type=data.event_type, source="/rapport/test", subject=str(data.episode_id), data=data,
                               time=at or self.now(), id=event_id)
        event = self.cause
        await handlers.dispatch(data, self)
        return event

    async def command(self, cmd):
        self.cause = None
        return await handlers.dispatch(cmd, self)

    async def advance_to(self, at: datetime) -> int:
        """Move the clock to ``at``, firing every plan due by then in time order (as the runner
        would, each seeing the clock at its due time); how many fired."""
        fired = 0
        while True:
            due = sorted((d, k) for k, (d, _) in self.timers.live.items() if d <= at)
            if not due:
                break
            when, (kind, key) = due[0]
            _, payload = self.timers.live.pop((kind, key))
            self._move_to(when)
            self.cause = None
            await handlers.timer_handlers[kind](self, Timer(uuid.uuid4(), kind, key, when, payload))
            fired += 1
        self._move_to(at)
        return fired

    def _move_to(self, at: datetime) -> None:
        if at > self.now():
            self.clock.advance(at - self.now())

    async def advance(self, delta: timedelta) -> int:
        return await self.advance_to(self.now() + delta)
