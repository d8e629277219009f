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
    assert run.parse_args([]).selected == ["relay", "consumer", "e2e", "replay", "safety"]
    args = run.parse_args(["--only", "replay", "--only", "relay", "--n", "50", "--json", "out.json"])
    assert args.selected == ["relay", "replay"] and args.n == 50 and args.json == Path("out.json")


def test_safety_takes_a_backlog_size_and_leaves_the_default_to_its_module(bench):
    run, _ = bench
    args = run.parse_args(["--only", "safety", "--n", "5", "--backlog", "5000"])
    assert (args.selected, args.n, args.backlog) == (["safety"], 5, 5000)
    assert run.parse_args(["--only", "safety", "--backlog", "0"]).backlog == 0  # no backlog: the baseline
    assert run.parse_args(["--only", "safety"]).backlog is None
    assert run.parse_args(["--only", "e2e", "--n", "1000", "--interval", "0"]).interval == 0


@pytest.mark.parametrize("argv", [["--only", "nope"], ["--n", "0"], ["--n", "many"], ["--backlog", "-1"],
                                  ["--backlog", "lots"], ["--interval", "-0.5"]])
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


def test_p99_is_the_99th_value_of_a_thousand_and_the_maximum_below_a_hundred(bench):
    _, figures = bench
    d = figures.distribution("e2e", "x", [i / 1000 for i in range(1000, 0, -1)])  # 1..1000 ms, unordered
    assert (d.p50_ms, d.p95_ms, d.p99_ms, d.max_ms) == (500.0, 950.0, 990.0, 1000.0)
    small = figures.distribution("safety", "x", [i / 1000 for i in range(1, 21)])
    assert (small.p95_ms, small.p99_ms) == (19.0, 20.0)
    assert small.as_dict()["p99_ms"] == 20.0  # --json carries it too
    assert figures.rate("relay", "drain", 10, 1.0).p99_ms is None


def test_table_has_one_row_per_figure_and_a_note_list(bench):
    _, figures = bench
    rows = [figures.rate("relay", "drain", 1000, 0.5, note="batch 200"),
            figures.distribution("relay", "latency", [0.001, 0.002])]
    text = figures.table(rows).splitlines()
    assert text[0].split() == ["benchmark", "measure", "n", "rate", "p50", "ms", "p95", "ms", "p99", "ms", "max", "ms"]
    assert "2,000 events/s" in text[2] and text[3].split()[-4:] == ["1.0", "2.0", "2.0", "2.0"]
    assert text[2].split()[-4:] == ["-", "-", "-", "-"]
    assert any("batch 200" in line for line in text)
    md = figures.table(rows, markdown=True).splitlines()
    assert len([line for line in md if line.startswith("|")]) == 4 and md[-1] == "- row 1 (relay / drain): batch 200"
    assert md[0] == "| benchmark | measure | n | rate | p50 ms | p95 ms | p99 ms | max ms |"
    assert md[1] == "|---|---|---:|---:|---:|---:|---:|---:|" and md[3].endswith("| 1.0 | 2.0 | 2.0 | 2.0 |")
