-- Delivery errors hold a CLASS, never contact data (issue 17, item 2). Until now last_error kept
-- "<code>: <detail>" where the detail could be an SMTP server's reply (which quotes the refused
-- address) or an exception's repr (which may quote anything). Rewrite every existing row to its
-- class, keeping only a detail that is a reply code; and from now on an erasure of the person
-- (or clinician) strips their deliveries' errors to the bare class.

CREATE FUNCTION error_class(err text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN err IS NULL THEN NULL
        WHEN err ~ '^webhook_rejected: HTTP [0-9]{3}$' THEN 'webhook_http_' || right(err, 3)
        WHEN err ~ '^sms_rejected: HTTP (401|403)$' THEN 'auth_failed: http ' || right(err, 3)
        WHEN err ~ '^sms_rejected: HTTP 429$' THEN 'provider_rate_limited: http 429'
        WHEN err ~ '^sms_rejected: HTTP 5[0-9]{2}$' THEN 'provider_unavailable: http ' || right(err, 3)
        WHEN err ~ '^sms_rejected: HTTP [0-9]{3}$' THEN 'provider_rejected: http ' || right(err, 3)
        WHEN err ~ '^smtp_error: [0-9]{3}$' THEN 'smtp_error: smtp ' || right(err, 3)
        WHEN err ~ '^status_lookup_failed: HTTP [0-9]{3}$' THEN 'status_lookup_failed: http ' || right(err, 3)
        WHEN err ~ '^(smtp|sms|webhook)_unreachable\M' THEN 'connection_failed'
        WHEN err ~ '^error\M' THEN 'internal_error'
        WHEN split_part(err, ':', 1) ~ '^[a-z][a-z0-9_]{0,63}$' THEN split_part(err, ':', 1)
        ELSE 'unclassified'
    END
$$;

UPDATE notifications SET last_error = error_class(last_error)
 WHERE last_error IS NOT NULL AND last_error IS DISTINCT FROM error_class(last_error);

-- Erasure: the tombstone reader and DELETE /v1/patients/{id} delete the patients row; clinicians
-- are erased with DELETE /v1/clinicians/{id}. Their deliveries keep the bare class only.
CREATE FUNCTION strip_delivery_errors() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'patients' THEN
        UPDATE notifications SET last_error = split_part(error_class(last_error), ':', 1)
         WHERE recipient_ref = 'patient:' || OLD.person_id AND last_error IS NOT NULL;
    ELSE
        UPDATE notifications SET last_error = split_part(error_class(last_error), ':', 1)
         WHERE recipient_ref IN ('clinician:' || OLD.clinician_id, 'oncall:' || OLD.clinician_id)
           AND last_error IS NOT NULL;
    END IF;
    RETURN OLD;
END $$;
CREATE TRIGGER patients_erased_strip_errors AFTER DELETE ON patients
    FOR EACH ROW EXECUTE FUNCTION strip_delivery_errors();
CREATE TRIGGER clinicians_erased_strip_errors AFTER DELETE ON clinicians
    FOR EACH ROW EXECUTE FUNCTION strip_delivery_errors();
