"""Generated partner documentation: the AsyncAPI 3.0 document and the static HTML event catalogue.

``python -m rapport_tools.docs``          regenerate ``docs/asyncapi.json`` and ``docs/events/``
``python -m rapport_tools.docs --check``  fail when a committed file is stale (CI; a unit test too)

Both are built from the code: the contract registry (``contracts.EVENT_MODELS``), the envelope
(``envelope``), the topic names (``topics``) and each service's consumer registrations.
"""
