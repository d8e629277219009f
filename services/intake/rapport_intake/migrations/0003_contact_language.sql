-- The person's language for messages (ContactRecordV1.language on the private contacts topic);
-- personal data like the rest of the row: erased with it.
ALTER TABLE contacts ADD COLUMN language text;
