from datetime import timedelta

import pytest
from pydantic import ValidationError

from rapport_shared.durations import duration


@pytest.mark.parametrize("raw,expected", [
    ("24h", timedelta(hours=24)), ("15m", timedelta(minutes=15)), ("2d", timedelta(days=2)),
    ("1w", timedelta(weeks=1)), ("30s", timedelta(seconds=30)), ("1.5h", timedelta(minutes=90)),
    ("PT24H", timedelta(hours=24)), ("P2D", timedelta(days=2)), (90, timedelta(seconds=90)),
    (timedelta(hours=1), timedelta(hours=1)),
])
def test_every_spelling_is_one_timedelta(raw, expected) -> None:
    assert duration(raw) == expected


@pytest.mark.parametrize("raw", ["-1h", "tomorrow", "24 hours", "", -5])
def test_nonsense_and_negative_refused(raw) -> None:
    with pytest.raises((ValidationError, ValueError)):
        duration(raw)
