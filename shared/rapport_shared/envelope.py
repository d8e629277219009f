"""Re-export of ``rapport_contracts.envelope`` (moved to the partner package: it needs nothing of the runtime)."""

from rapport_contracts.envelope import *  # noqa: F401,F403
