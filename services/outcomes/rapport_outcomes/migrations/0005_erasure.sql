-- Erasure of a person (issue 17; docs/privacy.md): intake announces it on rapport.erasures
-- (pseudonymous person id, organisation code, time); outcomes then erases the free text it holds
-- about that person: alerts.action_text (the coded `action` stays) and the copy of it in the
-- alert_audit row of the resolution.

-- alert_audit stays append-only, with one exception: an UPDATE whose only change is setting
-- details.action_text to null (the erasure). Anything else is still refused.
CREATE FUNCTION alert_audit_erase_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE'
       AND NEW.seq = OLD.seq AND NEW.alert_id = OLD.alert_id AND NEW.action = OLD.action
       AND NEW.actor = OLD.actor AND NEW.actor_role IS NOT DISTINCT FROM OLD.actor_role AND NEW.at = OLD.at
       AND NEW.event_id IS NOT DISTINCT FROM OLD.event_id
       AND OLD.details ? 'action_text'
       AND NEW.details = jsonb_set(OLD.details, '{action_text}', 'null'::jsonb) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION '% is append-only (% refused)', TG_TABLE_NAME, TG_OP;
END $$;
DROP TRIGGER alert_audit_append_only ON alert_audit;
CREATE TRIGGER alert_audit_append_only BEFORE UPDATE OR DELETE ON alert_audit
    FOR EACH ROW EXECUTE FUNCTION alert_audit_erase_only();

-- Every erasure notice applied (coded facts only): when, and how many alerts lost their text.
CREATE TABLE erasures (
    seq              bigserial PRIMARY KEY,
    person_id        text        NOT NULL,
    organisation_id  text,                       -- NULL = every organisation
    erased_at        timestamptz NOT NULL,       -- at intake
    applied_at       timestamptz NOT NULL,
    alerts           integer     NOT NULL
);
CREATE INDEX erasures_by_person ON erasures (person_id);
