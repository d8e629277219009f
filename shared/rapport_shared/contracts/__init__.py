"""The event contracts, re-exported from ``rapport_contracts`` (shared/rapport_contracts/): the
partner package holds the models, the catalogue and the CloudEvents binding with no server
dependency; the services keep importing them from here."""

from rapport_contracts import *  # noqa: F401,F403
from rapport_contracts import EVENT_MODELS, __all__, model_for  # noqa: F401
