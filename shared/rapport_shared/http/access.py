"""Who may see what (architecture.md): one policy, as data, enforced in one place.

Each service ships ``access.yaml`` (route × role × relation); the routes every service has
(health, metrics, access audit, care team) are in ``access_shared.yaml`` beside this file. The
app-wide dependency ``enforce`` runs before every route:

1. a route with no row refuses to start the service (``check_routes``), so none ships open;
2. ``public`` routes pass; otherwise a bearer token (401) holding a role of the row (403);
3. a row naming a ``record`` path parameter loads the record's scope through the service's
   resolver (organisation, person, assigned clinicians) and checks the caller's relation to it.
   A missing record and a record outside the caller's relationships answer **the same 404**;
4. a row with ``audit: true`` (reads of health data, safety-alert actions) writes an access-audit
   row — allowed or refused — to the service's append-only audit table before the handler runs.

Relations (``Relation``): ``any`` (the role alone suffices: catalogues, creating a record, lists
the handler scopes itself with ``Grant.list_filter``), ``own_person`` (a patient app's token
``sub`` is the record's person), ``assigned`` (the record's intake or treating clinician, in the
caller's organisation), ``care_team`` (a supervisor or current on-call clinician of the record's
organisation, from the service's care-team table), ``organisation`` (any caller of the record's
organisation: partners, that organisation's admin), ``operations`` (no record: metrics, DLQ).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import StrEnum
from pathlib import Path
from typing import Any, Awaitable, Callable, Mapping

import yaml
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.routing import APIRoute, iter_route_contexts

from .auth import Principal, _bearer, authenticate
from .errors import NotFound

SHARED_POLICY = Path(__file__).with_name("access_shared.yaml")


class Relation(StrEnum):
    any = "any"
    own_person = "own_person"
    assigned = "assigned"
    care_team = "care_team"
    organisation = "organisation"
    operations = "operations"


class Duty(StrEnum):
    supervisor = "supervisor"
    on_call = "on_call"


class AccessPolicyError(RuntimeError):
    """The policy and the routes disagree: the service must not start."""


@dataclass(frozen=True)
class Rule:
    key: str  # "GET /v1/referrals/{episode_id}"
    public: bool = False
    allow: Mapping[str, frozenset[Relation]] = field(default_factory=dict)
    record: str | None = None  # the path parameter naming the record
    audit: bool = False
    note: str = ""


@dataclass(frozen=True)
class RecordScope:
    """What a service knows about a record for access decisions (never personal data)."""

    organisation_id: str | None
    person_id: str | None = None
    assigned: frozenset[str] = frozenset()


Resolver = Callable[[Any, str], Awaitable[RecordScope | None]]


@dataclass(frozen=True)
class ListFilter:
    """How a list route narrows its rows for the caller (all set conditions must hold).
    ``nothing`` set: the caller reaches no row at all."""

    organisation_id: str | None = None
    assigned_to: str | None = None
    person_id: str | None = None
    nothing: bool = False


@dataclass
class Grant:
    """What ``enforce`` decided, for the handler: the caller, the relations its roles may use on
    this route, and (for a record route) the record's scope."""

    principal: Principal
    relations: frozenset[Relation]
    duties: frozenset[Duty] = frozenset()
    scope: RecordScope | None = None
    # The caller's roles that admit it here (to this record, on a record route): a handler that
    # shapes its answer by role (a partner's minimal view) asks this, not the token's roles.
    roles: frozenset[str] = frozenset()

    def list_filter(self) -> ListFilter:
        p, rel = self.principal, self.relations
        if Relation.any in rel or Relation.operations in rel:
            return ListFilter()
        if p.org and (Relation.organisation in rel or (Relation.care_team in rel and self.duties)):
            return ListFilter(organisation_id=p.org)
        if p.org and Relation.assigned in rel:
            return ListFilter(organisation_id=p.org, assigned_to=p.sub)
        if Relation.own_person in rel:
            return ListFilter(person_id=p.sub)
        return ListFilter(nothing=True)


class AccessPolicy:
    def __init__(self, rules: dict[str, Rule]) -> None:
        self.rules = rules

    @classmethod
    def load(cls, *paths: Path) -> "AccessPolicy":
        rules: dict[str, Rule] = {}
        for path in (SHARED_POLICY, *paths):
            doc = yaml.safe_load(Path(path).read_text()) or {}
            for key, raw in (doc.get("routes") or {}).items():
                if key in rules:
                    raise AccessPolicyError(f"{path}: route {key!r} has two rows")
                rules[key] = _rule(key, raw or {}, path)
        return cls(rules)

    def rule(self, method: str, path: str) -> Rule | None:
        return self.rules.get(f"{method.upper()} {path}")

    def check_routes(self, app: FastAPI) -> None:
        """Every route has a row and every row a route; a row's ``record`` is a path parameter."""
        seen: set[str] = set()
        missing: list[str] = []
        # FastAPI >= 0.16x keeps included routers lazily (app.routes holds _IncludedRouter
        # entries): walk the effective routes, with their full paths.
        for route in iter_route_contexts(app.routes):
            if not isinstance(route.original_route, APIRoute):
                continue
            for method in sorted((route.methods or set()) - {"HEAD", "OPTIONS"}):
                key = f"{method} {route.path}"
                seen.add(key)
                rule = self.rules.get(key)
                if rule is None:
                    missing.append(key)
                elif rule.record and "{" + rule.record + "}" not in route.path:
                    raise AccessPolicyError(f"{key}: record {rule.record!r} is not a path parameter")
        if missing:
            raise AccessPolicyError("routes with no row in the access policy: " + ", ".join(sorted(missing)))
        stale = sorted(set(self.rules) - seen)
        if stale:
            raise AccessPolicyError("access policy rows with no route: " + ", ".join(stale))


def _rule(key: str, raw: dict, path: Path) -> Rule:
    unknown = set(raw) - {"public", "allow", "record", "audit", "note"}
    if unknown:
        raise AccessPolicyError(f"{path}: {key}: unknown keys {sorted(unknown)}")
    allow: dict[str, frozenset[Relation]] = {}
    for role, rels in (raw.get("allow") or {}).items():
        try:
            allow[role] = frozenset(Relation(r) for r in rels)
        except ValueError as exc:
            raise AccessPolicyError(f"{path}: {key}: {role}: {exc}") from None
    if not raw.get("public") and not allow:
        raise AccessPolicyError(f"{path}: {key}: neither public nor allowed to any role")
    return Rule(key=key, public=bool(raw.get("public")), allow=allow, record=raw.get("record"),
                audit=bool(raw.get("audit")), note=raw.get("note", ""))


# ---- enforcement ---------------------------------------------------------------------------------

@dataclass
class AccessConfig:
    """Per app: the policy, the service's record resolvers and where the audit and care team live."""

    policy: AccessPolicy
    resolvers: dict[str, Resolver] = field(default_factory=dict)
    audit_table: str = "access_audit"
    care_team_table: str = "access_care_team"


def _not_found(rule: Rule, value: str) -> NotFound:
    # One body for "missing" and "not yours": nothing tells the two apart.
    noun = rule.record.removesuffix("_id") if rule.record else "record"
    return NotFound(f"no {noun} {value}", field=rule.record)


async def duties_of(conn, table: str, principal: Principal, now: datetime) -> frozenset[Duty]:
    if not principal.org:
        return frozenset()
    rows = await conn.fetch(
        f"SELECT duty FROM {table} WHERE organisation_id = $1 AND clinician_id = $2"
        " AND (starts_at IS NULL OR starts_at <= $3) AND (ends_at IS NULL OR ends_at > $3)",
        principal.org, principal.sub, now)
    return frozenset(Duty(r["duty"]) for r in rows)


def relations_to(principal: Principal, scope: RecordScope, duties: frozenset[Duty]) -> frozenset[Relation]:
    have = {Relation.any, Relation.operations}
    if scope.person_id is not None and principal.sub == scope.person_id:
        have.add(Relation.own_person)
    if principal.org and scope.organisation_id == principal.org:
        have.add(Relation.organisation)
        if principal.sub in scope.assigned:
            have.add(Relation.assigned)
        if duties:
            have.add(Relation.care_team)
    return frozenset(have)


async def write_audit(conn, table: str, *, at: datetime, principal: Principal | None, request: Request, rule: Rule,
                      record_id: str | None, scope: RecordScope | None, decision: str, status: int) -> None:
    await conn.execute(
        f"INSERT INTO {table} (at, actor, actor_roles, actor_org, method, route, record_param, record_id,"
        " record_org, decision, status) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)",
        at, principal.sub if principal else None, sorted(principal.roles) if principal else [],
        principal.org if principal else None, request.method, rule.key.split(" ", 1)[1], rule.record, record_id,
        scope.organisation_id if scope else None, decision, status)


async def enforce(request: Request) -> None:
    """The app-wide dependency (create_app installs it): see the module docstring."""
    cfg: AccessConfig = request.app.state.access
    route = request.scope.get("route")
    rule = cfg.policy.rule(request.method, getattr(route, "path", ""))
    if rule is None:  # check_routes makes this unreachable for declared routes
        raise HTTPException(status_code=404, detail="no such route")
    if rule.public:
        return
    principal = await authenticate(request, await _bearer(request))
    roles = principal.roles & set(rule.allow)
    if not roles:
        raise HTTPException(status_code=403, detail=f"requires one of roles: {', '.join(sorted(rule.allow))}")
    relations = frozenset().union(*(rule.allow[r] for r in roles))
    runtime = request.app.state.runtime
    now = runtime.clock.now() if getattr(runtime, "clock", None) else datetime.now(timezone.utc)
    grant = Grant(principal, relations, roles=frozenset(roles))
    needs_duties = Relation.care_team in relations
    record_id = request.path_params.get(rule.record) if rule.record else None
    async with runtime.pool.acquire() as conn:
        if needs_duties:
            grant.duties = await duties_of(conn, cfg.care_team_table, principal, now)
        decision, status = "allowed", 200
        if rule.record and not relations <= {Relation.any, Relation.operations}:
            resolver = cfg.resolvers.get(rule.record)
            if resolver is None:
                raise AccessPolicyError(f"{rule.key}: no resolver for record {rule.record!r}")
            scope = await resolver(conn, str(record_id))
            grant.scope = scope
            if scope is None:
                decision, status = "not_found", 404
            else:
                have = relations_to(principal, scope, grant.duties)
                grant.roles = frozenset(r for r in roles if rule.allow[r] & have)
                if not grant.roles:
                    decision, status = "refused", 404
        if rule.audit or decision != "allowed":
            await write_audit(conn, cfg.audit_table, at=now, principal=principal, request=request, rule=rule,
                              record_id=str(record_id) if record_id is not None else None, scope=grant.scope,
                              decision=decision, status=status)
    if decision != "allowed":
        raise _not_found(rule, str(record_id))
    request.state.grant = grant


async def current_grant(request: Request) -> Grant:
    """For handlers: what ``enforce`` decided (relations, list filter, the record's scope)."""
    return request.state.grant


def audit_query_sql(table: str) -> str:
    return (f"SELECT seq, at, actor, actor_roles, actor_org, method, route, record_param, record_id, record_org,"
            f" decision, status FROM {table} WHERE seq > $1 AND (record_org = $2 OR actor_org = $2)"
            " AND ($3::text IS NULL OR record_id = $3) AND ($4::text IS NULL OR actor = $4)"
            " AND ($5::text IS NULL OR decision = $5) ORDER BY seq LIMIT $6")


def audit_row(r) -> dict[str, Any]:
    return {"seq": r["seq"], "at": r["at"].isoformat(), "actor": r["actor"], "actor_roles": list(r["actor_roles"]),
            "actor_org": r["actor_org"], "method": r["method"], "route": r["route"],
            "record_param": r["record_param"], "record_id": r["record_id"], "record_org": r["record_org"],
            "decision": r["decision"], "status": r["status"]}

