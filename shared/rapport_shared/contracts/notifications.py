"""Re-export of ``rapport_contracts.notifications`` (the models live in the partner package, which has no server dependency)."""

from rapport_contracts.notifications import *  # noqa: F401,F403
