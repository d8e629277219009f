import sys
from pathlib import Path

import pytest

# --import-mode=importlib puts no test directory on sys.path; the helpers module lives here.
sys.path.insert(0, str(Path(__file__).parent))

from intake_e2e_helpers import Api, PlainConsumer  # noqa: E402


@pytest.fixture
def plain(kafka) -> PlainConsumer:
    return PlainConsumer(kafka.bootstrap)


@pytest.fixture
def api(system, tokens) -> Api:
    return Api(system["intake"].url, tokens)
