"""The shared access mechanism (rapport_shared.http.access) on a small app with a fake pool:
role × relation decisions, one 404 for missing and not-yours, audit rows, the route check."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from rapport_shared.http.access import (AccessConfig, AccessPolicy, AccessPolicyError, Grant, ListFilter, RecordScope,
                                        current_grant, enforce)
from rapport_shared.http.auth import TokenAuthority
from rapport_shared.http.errors import install_error_handlers

AUTH = TokenAuthority("unit-secret-0123456789abcdef0123456789", org="org-a")
NOW = datetime(2026, 1, 5, 12, tzinfo=timezone.utc)

POLICY = """
routes:
  GET /episodes/{episode_id}:
    record: episode_id
    audit: true
    allow: {clinician: [assigned, care_team], partner: [organisation], patient_app: [own_person]}
  GET /episodes:
    allow: {clinician: [assigned, care_team], partner: [organisation]}
  GET /catalogue:
    allow: {clinician: [any], partner: [any]}
"""

RECORDS = {
    "e1": RecordScope(organisation_id="org-a", person_id="P-1", assigned=frozenset({"clin-1"})),
    "e2": RecordScope(organisation_id="org-b", person_id="P-2", assigned=frozenset({"clin-1"})),
}


class FakeConn:
    def __init__(self, store):
        self.store = store

    async def fetch(self, sql, *args):
        if "access_care_team" in sql:
            org, sub, _ = args
            return [{"duty": d} for (o, c, d) in self.store["duties"] if o == org and c == sub]
        raise AssertionError(sql)

    async def execute(self, sql, *args):
        assert sql.startswith("INSERT INTO audit.access_audit")
        self.store["audit"].append(args)


class FakePool:
    def __init__(self, store):
        self.store = store

    def acquire(self):
        pool = self

        class Ctx:
            async def __aenter__(self):
                return FakeConn(pool.store)

            async def __aexit__(self, *a):
                return False

        return Ctx()


class FakeRuntime:
    def __init__(self, store):
        self.pool = FakePool(store)
        self.clock = type("C", (), {"now": staticmethod(lambda: NOW)})()


def build(tmp_path: Path, policy: str = POLICY):
    store = {"audit": [], "duties": []}
    (tmp_path / "access.yaml").write_text(policy)
    app = FastAPI(dependencies=[Depends(enforce)])
    install_error_handlers(app)
    app.state.runtime = FakeRuntime(store)
    app.state.token_authority = AUTH

    async def resolve(conn, value):
        return RECORDS.get(value)

    app.state.access = AccessConfig(policy=AccessPolicy.load(tmp_path / "access.yaml"),
                                    resolvers={"episode_id": resolve}, audit_table="audit.access_audit")

    @app.get("/episodes/{episode_id}")
    async def episode(episode_id: str, grant: Grant = Depends(current_grant)):
        return {"episode_id": episode_id, "by": grant.principal.sub}

    @app.get("/episodes")
    async def episodes(grant: Grant = Depends(current_grant)):
        f = grant.list_filter()
        return {"org": f.organisation_id, "assigned_to": f.assigned_to, "nothing": f.nothing}

    @app.get("/catalogue")
    async def catalogue():
        return {"ok": True}

    return app, store


NO_ORG = TokenAuthority(AUTH.secret)  # tokens that name no organisation


def h(sub, roles, org="org-a"):
    token = AUTH.issue(sub, roles, org=org) if org else NO_ORG.issue(sub, roles)
    return {"Authorization": f"Bearer {token}"}


def test_routes_without_a_row_refuse_to_start(tmp_path):
    app, _ = build(tmp_path, POLICY.replace("  GET /catalogue:\n    allow: {clinician: [any], partner: [any]}\n", ""))
    with pytest.raises(AccessPolicyError, match="GET /catalogue"):
        app.state.access.policy.check_routes(app)


def test_rows_without_a_route_refuse_to_start(tmp_path):
    app, _ = build(tmp_path, POLICY + "  DELETE /gone:\n    allow: {clinician: [any]}\n")
    with pytest.raises(AccessPolicyError, match="DELETE /gone"):
        app.state.access.policy.check_routes(app)


def test_assigned_clinician_reads_and_is_audited(tmp_path):
    app, store = build(tmp_path)
    r = TestClient(app).get("/episodes/e1", headers=h("clin-1", ["clinician"]))
    assert r.status_code == 200 and r.json()["by"] == "clin-1"
    (row,) = store["audit"]
    assert row[1] == "clin-1" and row[7] == "e1" and row[8] == "org-a" and row[9] == "allowed"


def test_not_yours_answers_exactly_like_missing(tmp_path):
    app, store = build(tmp_path)
    c = TestClient(app)
    other_clinician = c.get("/episodes/e1", headers=h("clin-2", ["clinician"]))
    other_org = c.get("/episodes/e2", headers=h("clin-1", ["clinician"]))  # assigned, but another organisation
    missing = c.get("/episodes/e9", headers=h("clin-1", ["clinician"]))
    assert other_clinician.status_code == other_org.status_code == missing.status_code == 404
    assert other_clinician.json()["field"] == "episode_id"
    strip = lambda r: {k: v for k, v in r.json().items() if k != "detail"}  # noqa: E731
    assert strip(other_clinician) == strip(other_org) == strip(missing)
    assert [row[9] for row in store["audit"]] == ["refused", "refused", "not_found"]


def test_partner_reaches_its_organisation_only(tmp_path):
    app, _ = build(tmp_path)
    c = TestClient(app)
    assert c.get("/episodes/e1", headers=h("partner-a", ["partner"])).status_code == 200
    assert c.get("/episodes/e1", headers=h("partner-b", ["partner"], org="org-b")).status_code == 404


def test_patient_app_reaches_its_own_person_only(tmp_path):
    app, _ = build(tmp_path)
    c = TestClient(app)
    assert c.get("/episodes/e1", headers=h("P-1", ["patient_app"], org=None)).status_code == 200
    assert c.get("/episodes/e1", headers=h("P-2", ["patient_app"], org=None)).status_code == 404


def test_supervisor_of_the_organisation_reaches_unassigned_records(tmp_path):
    app, store = build(tmp_path)
    c = TestClient(app)
    assert c.get("/episodes/e1", headers=h("sup-1", ["clinician"])).status_code == 404
    store["duties"].append(("org-a", "sup-1", "supervisor"))
    assert c.get("/episodes/e1", headers=h("sup-1", ["clinician"])).status_code == 200
    assert c.get("/episodes/e2", headers=h("sup-1", ["clinician"])).status_code == 404  # not org-b's supervisor


def test_wrong_role_is_403_and_no_token_401(tmp_path):
    app, _ = build(tmp_path)
    c = TestClient(app)
    assert c.get("/episodes/e1", headers=h("op-1", ["operator"])).status_code == 403
    assert c.get("/episodes/e1").status_code == 401
    assert c.get("/catalogue", headers=h("partner-b", ["partner"], org="org-b")).status_code == 200


def test_list_filter_follows_the_relation(tmp_path):
    app, store = build(tmp_path)
    c = TestClient(app)
    assert c.get("/episodes", headers=h("clin-1", ["clinician"])).json() == {
        "org": "org-a", "assigned_to": "clin-1", "nothing": False}
    assert c.get("/episodes", headers=h("partner-a", ["partner"])).json() == {
        "org": "org-a", "assigned_to": None, "nothing": False}
    store["duties"].append(("org-a", "sup-1", "supervisor"))
    assert c.get("/episodes", headers=h("sup-1", ["clinician"])).json() == {
        "org": "org-a", "assigned_to": None, "nothing": False}
    assert c.get("/episodes", headers=h("clin-9", ["clinician"], org=None)).json()["nothing"] is True


def test_list_filter_defaults():
    from rapport_shared.http.auth import Principal
    from rapport_shared.http.access import Relation

    g = Grant(Principal(sub="P-1", roles=frozenset({"patient_app"})), frozenset({Relation.own_person}))
    assert g.list_filter() == ListFilter(person_id="P-1")
