"""Re-export of ``rapport_contracts.intake`` (the models live in the partner package, which has no server dependency)."""

from rapport_contracts.intake import *  # noqa: F401,F403
