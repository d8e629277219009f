-- Care-team duties per organisation (rapport_shared.http.access): a supervisor, or an on-call
-- clinician for a window, reaches the organisation's records on the routes whose policy row
-- allows the care_team relation. Set over HTTP by an admin of that organisation.
CREATE TABLE access_care_team (
    entry_id        bigserial PRIMARY KEY,
    organisation_id text        NOT NULL,
    clinician_id    text        NOT NULL,
    duty            text        NOT NULL CHECK (duty IN ('supervisor', 'on_call')),
    starts_at       timestamptz,                 -- NULL: from always
    ends_at         timestamptz,                 -- NULL: until removed
    set_by          text        NOT NULL,
    set_at          timestamptz NOT NULL
);
CREATE INDEX access_care_team_lookup ON access_care_team (organisation_id, clinician_id);
