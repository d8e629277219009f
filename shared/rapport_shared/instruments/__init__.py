"""Outcome instruments (domain.md 3): the data-driven catalogue, scoring and change rules.

Answers are a mapping of questionnaire item number to int; see ``scoring`` for the rules.
"""

from .catalogue import (
    Band,
    Catalogue,
    CatalogueError,
    Cutoff,
    FlagRule,
    InstrumentDefinition,
    ItemDefinition,
    ReliableChangeRule,
    ResponseRule,
    Subscale,
    TotalRange,
    UnknownInstrument,
    UnscoredItems,
    jacobson_truax,
    load_catalogue,
)
from .change import (
    DEFAULT_PAIRED_MEASURES,
    DEFAULT_TRIAL_MEASURE,
    EpisodeClassification,
    InstrumentChange,
    ReliableChangeOutcome,
    TotalError,
    classify_episode,
    classify_instrument,
    reliable_change,
)
from .scoring import AnswerError, ScoreResult, score, validate_answers

__all__ = [
    "DEFAULT_PAIRED_MEASURES",
    "DEFAULT_TRIAL_MEASURE",
    "AnswerError",
    "Band",
    "Catalogue",
    "CatalogueError",
    "Cutoff",
    "EpisodeClassification",
    "FlagRule",
    "InstrumentChange",
    "InstrumentDefinition",
    "ItemDefinition",
    "ReliableChangeOutcome",
    "ReliableChangeRule",
    "ResponseRule",
    "ScoreResult",
    "Subscale",
    "TotalError",
    "TotalRange",
    "UnknownInstrument",
    "UnscoredItems",
    "classify_episode",
    "classify_instrument",
    "jacobson_truax",
    "load_catalogue",
    "reliable_change",
    "score",
    "validate_answers",
]
