"""Re-export of ``rapport_contracts.pseudonyms`` (moved to the partner package: it needs nothing of the runtime)."""

from rapport_contracts.pseudonyms import *  # noqa: F401,F403
