"""Re-export of ``rapport_contracts.topics`` (moved to the partner package: it needs nothing of the runtime)."""

from rapport_contracts.topics import *  # noqa: F401,F403
