"""Re-export of ``rapport_contracts.course`` (the models live in the partner package, which has no server dependency)."""

from rapport_contracts.course import *  # noqa: F401,F403
