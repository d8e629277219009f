"""Pure parts of replay (shared/rapport_tools/replay.py)."""

from rapport_shared.projection import Table
from rapport_tools.replay import behind, offsets_differ


def test_behind_counts_records_left_per_partition():
    target = {("a", 0): 10, ("a", 1): 5}
    assert behind(target, {}) == 15
    assert behind(target, {("a", 0): 10, ("a", 1): 2}) == 3
    assert behind(target, {("a", 0): 12, ("a", 1): 5}) == 0  # past the target counts as caught up


def test_offsets_differ_names_each_partition_of_the_replayed_topics():
    mine = {("rapport.course", 0): 7, ("rapport.course", 1): 3}
    assert offsets_differ(mine, dict(mine)) == []
    theirs = {("rapport.course", 0): 7, ("rapport.course", 1): 4, ("rapport.course", 2): 1, ("other", 0): 9}
    assert offsets_differ(mine, theirs) == ["rapport.course:1 replay=3 live=4", "rapport.course:2 replay=0 live=1"]


def test_row_filter_is_written_for_the_alias_it_is_used_with():
    t = Table("submissions", key=("submission_id",), where="{r}.source = 'intake'")
    assert t.rows("l") == "l.source = 'intake'" and Table("x", key=("id",)).rows("s") == "true"
