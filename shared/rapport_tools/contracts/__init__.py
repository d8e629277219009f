"""Tooling for the event contracts (rapport_shared.contracts): the JSON Schema export and the
compatibility check against the published baseline."""
