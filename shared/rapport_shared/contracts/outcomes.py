"""Re-export of ``rapport_contracts.outcomes`` (the models live in the partner package, which has no server dependency)."""

from rapport_contracts.outcomes import *  # noqa: F401,F403
