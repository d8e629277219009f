"""What a replay rebuilds in a service: its **projection**, declared as tables.

A service's projection is the part of its state derived from the topics it consumes; each service
declares it in ``rapport_<svc>/projection.py`` with these two types. The rest of its state is a
*record of authority* (what people entered over HTTP, what was sent to the outside world): Kafka
cannot rebuild it and replay never touches it. The replay itself (shadow schema, verify, swap) is a
tool: ``rapport_tools.replay`` (docs/replay.md, "Rebuilding projections")."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Table:
    """One projection table. ``columns`` = only these columns are projection (the others are
    authority: rows cannot be inserted or deleted by a swap); ``exclude`` = bookkeeping columns
    (processing time, local sequence numbers) left out of the hash and the update; ``where`` =
    only these rows are projection (e.g. the baselines among all submissions)."""

    name: str
    key: tuple[str, ...]
    columns: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    where: str | None = None

    def rows(self, alias: str) -> str:
        return self.where.format(r=alias) if self.where else "true"

    @property
    def partial_columns(self) -> bool:
        return self.columns is not None


@dataclass(frozen=True)
class Projection:
    tables: tuple[Table, ...]
    note: str  # what the projection is and what is not in it (printed by `replay run`)
    seed: tuple[str, ...] = ()  # authority tables the handlers read, copied into the shadow first
    extra_groups: dict[str, tuple[str, ...]] = field(default_factory=dict)  # group suffix → topics
