"""Re-export of ``rapport_contracts.base`` (the models live in the partner package, which has no server dependency)."""

from rapport_contracts.base import *  # noqa: F401,F403
