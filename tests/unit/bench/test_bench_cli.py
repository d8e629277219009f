"""bench/run.py without infrastructure: argument parsing and the figures table (no timing here)."""

import importlib
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[3] / "bench"


@pytest.fixture
def bench(monkeypatch):
    """bench/run.py and bench/figures.py, imported as the script imports them (bench/ on sys.path)."""
    monkeypatch.syspath_prepend(str(BENCH))
    for name in ("run", "figures"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    yield importlib.import_module("run"), importlib.import_module("figures")
    for name in ("run", "figures"):
        sys.modules.pop(name, None)


def test_all_benchmarks_by_default_and_only_keeps_the_canonical_order(bench):
    run, _ = bench
    assert run.parse_args([]).selected == ["relay", "consumer", "e2e", "replay"]
    args = run.parse_args(["--only", "replay", "--only", "relay", "--n", "50", "--json", "out.json"])
    assert args.selected == ["relay", "replay"] and args.n == 50 and args.json == Path("out.json")


@pytest.mark.parametrize("argv", [["--only", "nope"], ["--n", "0"], ["--n", "many"]])
def test_bad_arguments_are_refused(bench, argv, capsys):
    run, _ = bench
    with pytest.raises(SystemExit) as exc:
        run.parse_args(argv)
    assert exc.value.code == 2


def test_percentiles_are_observed_values_by_nearest_rank(bench):
    _, figures = bench
    values = list(range(1, 101))
    assert figures.percentile(values, 50) == 50 and figures.percentile(values, 95) == 95
    assert figures.percentile([7.0], 95) == 7.0
    d = figures.distribution("e2e", "x", [0.010, 0.020, 0.030])
    assert (d.n, d.p50_ms, d.max_ms) == (3, 20.0, 30.0)


def test_table_has_one_row_per_figure_and_a_note_list(bench):
    _, figures = bench
    rows = [figures.rate("relay", "drain", 1000, 0.5, note="batch 200"),
            figures.distribution("relay", "latency", [0.001, 0.002])]
    text = figures.table(rows).splitlines()
    assert text[0].split() == ["benchmark", "measure", "n", "rate", "p50", "ms", "p95", "ms", "max", "ms"]
    assert "2,000 events/s" in text[2] and text[3].split()[-3:] == ["1.0", "2.0", "2.0"]
    assert any("batch 200" in line for line in text)
    md = figures.table(rows, markdown=True).splitlines()
    assert len([line for line in md if line.startswith("|")]) == 4 and md[-1] == "- row 1 (relay / drain): batch 200"
