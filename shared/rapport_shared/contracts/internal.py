"""Re-export of ``rapport_contracts.internal`` (the models live in the partner package, which has no server dependency)."""

from rapport_contracts.internal import *  # noqa: F401,F403
