"""What replay rebuilds in outcomes: declared in ``adapters/projection.py`` (its row filter is
SQL); here because replay looks for ``rapport_<svc>.projection``."""

from .adapters.projection import PROJECTION

__all__ = ["PROJECTION"]
