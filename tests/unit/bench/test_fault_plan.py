"""bench/faults.py without infrastructure: its crash plan covers every crash point the code declares."""

import importlib.util
import re
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def faults():
    spec = importlib.util.spec_from_file_location("rapport_bench_faults", ROOT / "bench" / "faults.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def declared_crash_points() -> set[str]:
    found = set()
    for path in [*(ROOT / "services").rglob("*.py"), *(ROOT / "shared").rglob("*.py")]:
        if path.name == "faults.py":
            continue
        found |= set(re.findall(r"""crash_point\(\s*["']([\w.]+)["']""", path.read_text()))
    return found


def test_every_declared_crash_point_is_in_the_fault_suite(faults):
    declared = declared_crash_points()
    assert declared, "no crash_point(...) found: the pattern is out of date"
    assert set(faults.ALL_POINTS) == declared


def test_arguments(faults):
    opts = faults.parse_args(["--episodes", "20", "--pause", "5"])
    assert (opts.episodes, opts.pause_s) == (20, 5) and 0.3 <= opts.interval_s <= 6
    with pytest.raises(SystemExit):
        faults.parse_args(["--episodes", "0"])
