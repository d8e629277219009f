"""Generated partner documentation: the AsyncAPI 3.0 document, the static HTML event catalogue, the
published JSON Schemas and the catalogue tables of ``docs/events.md``.

``python -m rapport_tools.docs``          regenerate ``docs/asyncapi.json``, ``docs/events/`` and ``docs/events.md``'s tables
``python -m rapport_tools.docs --check``  fail when a committed file is stale (CI; a unit test too)

All are built from the code: the contract models (``contracts.EVENT_MODELS``, ``contracts.internal``)
with one example each, the envelope (``envelope``, the schema URIs), the topic names (``topics``),
each service's handler registry (what it consumes) and Kafka access (what it writes and reads).
``node tools/asyncapi/validate.mjs docs/asyncapi.json`` checks the document with the official parser.
"""
