"""Hostile records must not grow the metrics without bound: a record's type becomes a label only
when the catalogue knows it (found by fuzzing: random 4 KB ce_type values each made a label)."""

from rapport_shared.consumer import _type_label


def test_catalogued_types_keep_their_name():
    assert _type_label("rapport.intake.completed.v1") == "rapport.intake.completed.v1"


def test_anything_else_is_one_label():
    assert _type_label("x" * 4000) == _type_label("rapport.made.up.v9") == "uncatalogued"
