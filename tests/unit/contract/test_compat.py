"""The compatibility checker itself: each kind of breaking change is caught, each safe change passes.

Schemas are built from small pydantic models exactly as the real contracts are (``EventData``
subclasses exported in serialization mode), so the checker sees the shapes pydantic really emits
(``anyOf`` with null, ``$ref`` into ``$defs``, constraints beside types)."""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from typing import Literal
from uuid import UUID

import pytest
from pydantic import BaseModel, ConfigDict, Field

from rapport_tools.contracts.compat import (
    BREAKING, CAUTION, SAFE, compare_catalogues, compare_schemas, main, publish,
)

pytestmark = pytest.mark.unit


def schema(model: type[BaseModel]) -> dict:
    return model.model_json_schema(mode="serialization")


def kinds(old: type[BaseModel], new: type[BaseModel]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for c in compare_schemas(schema(old), schema(new), "rapport.test.v1"):
        out.setdefault(c.level, set()).add(f"{c.kind}@{c.path}")
    return out


class Base(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Colour(StrEnum):
    red = "red"
    green = "green"


class ColourWider(StrEnum):
    red = "red"
    green = "green"
    blue = "blue"


class ColourNarrower(StrEnum):
    red = "red"


class Inner(Base):
    code: str
    count: int = Field(ge=1)


class V1(Base):
    episode_id: UUID
    name_code: str
    count: int = Field(ge=1, le=20)
    colour: Colour
    note: str | None = None
    tags: list[str] = Field(default_factory=list)
    inner: Inner
    at: datetime


# ---------------------------------------------------------------- unchanged and safe changes

def test_identical_schemas_have_no_change():
    assert compare_schemas(schema(V1), schema(V1)) == []


def test_adding_an_optional_field_is_safe():
    class V(V1):
        extra: int | None = None
        more: list[str] = Field(default_factory=list)

    assert kinds(V1, V) == {SAFE: {"field_added_optional@extra", "field_added_optional@more"}}


def test_adding_an_optional_field_to_a_nested_model_is_safe():
    class Inner2(Inner):
        unit: str | None = None

    class V(V1):
        inner: Inner2

    assert kinds(V1, V) == {SAFE: {"field_added_optional@inner.unit"}}


def test_widening_an_enum_is_allowed_with_a_caution():
    class V(V1):
        colour: ColourWider

    assert kinds(V1, V) == {CAUTION: {"enum_widened@colour"}}


def test_loosening_a_constraint_is_allowed_with_a_caution():
    class V(V1):
        count: int = Field(ge=0, le=30)

    assert kinds(V1, V) == {CAUTION: {"constraint_loosened@count"}}


def test_descriptions_and_titles_do_not_matter():
    class V(V1):
        count: int = Field(ge=1, le=20, description="how many", title="Count!")

    assert compare_schemas(schema(V1), schema(V)) == []


def test_a_new_type_and_a_v2_beside_an_unchanged_v1_are_safe():
    class V2(Base):
        episode_id: UUID
        name_code: int  # the breaking change, as a new version

    published = {"rapport.test.v1": schema(V1)}
    current = {"rapport.test.v1": schema(V1), "rapport.test.v2": schema(V2), "rapport.other.v1": schema(Inner)}
    report = compare_catalogues(published, current)
    assert report.ok(strict=True)
    assert {(c.kind, c.event_type, c.message) for c in report.changes} == {
        ("type_added", "rapport.test.v2", "new version beside rapport.test.v1"),
        ("type_added", "rapport.other.v1", "new event type"),
    }


# ---------------------------------------------------------------- breaking changes

def test_removing_a_field_breaks():
    class V(Base):
        episode_id: UUID
        count: int = Field(ge=1, le=20)
        colour: Colour
        note: str | None = None
        tags: list[str] = Field(default_factory=list)
        inner: Inner
        at: datetime

    assert kinds(V1, V) == {BREAKING: {"field_removed@name_code"}}


def test_removing_an_optional_field_breaks_too():
    class V(Base):
        episode_id: UUID
        name_code: str
        count: int = Field(ge=1, le=20)
        colour: Colour
        tags: list[str] = Field(default_factory=list)
        inner: Inner
        at: datetime

    assert kinds(V1, V) == {BREAKING: {"field_removed@note"}}


def test_renaming_a_field_breaks_and_is_named_as_a_rename():
    class V(Base):
        episode_id: UUID
        name: str  # was name_code
        count: int = Field(ge=1, le=20)
        colour: Colour
        note: str | None = None
        tags: list[str] = Field(default_factory=list)
        inner: Inner
        at: datetime

    changes = compare_schemas(schema(V1), schema(V))
    assert {(c.level, c.kind, c.path) for c in changes} == {
        (BREAKING, "field_removed", "name_code"), (BREAKING, "field_added_required", "name")}
    [removed] = [c for c in changes if c.kind == "field_removed"]
    assert "renamed to 'name'" in removed.message


@pytest.mark.parametrize("new_type", [int, float, list[str], bool])
def test_changing_a_field_type_breaks(new_type):
    V = type("V", (V1,), {"__annotations__": {"name_code": new_type}})
    assert kinds(V1, V) == {BREAKING: {"type_changed@name_code"}}


def test_changing_a_nested_field_type_breaks():
    class Inner2(Base):
        code: int
        count: int = Field(ge=1)

    class V(V1):
        inner: Inner2

    assert kinds(V1, V) == {BREAKING: {"type_changed@inner.code"}}


def test_changing_an_item_type_of_a_list_breaks():
    class V(V1):
        tags: list[int] = Field(default_factory=list)

    assert kinds(V1, V) == {BREAKING: {"type_changed@tags[]"}}


def test_integer_to_number_is_a_type_change():
    class V(V1):
        count: float = Field(ge=1, le=20)

    assert kinds(V1, V) == {BREAKING: {"type_changed@count"}}


def test_narrowing_an_enum_breaks():
    class V(V1):
        colour: ColourNarrower

    assert kinds(V1, V) == {BREAKING: {"enum_narrowed@colour"}}


def test_restricting_a_string_to_literals_breaks():
    class V(V1):
        name_code: Literal["a", "b"]

    assert kinds(V1, V) == {BREAKING: {"enum_narrowed@name_code"}}


def test_making_an_optional_field_required_breaks():
    class V(V1):
        tags: list[str]

    assert kinds(V1, V) == {BREAKING: {"became_required@tags"}}


def test_making_a_nullable_field_required_and_not_null_breaks_twice():
    class V(V1):
        note: str

    assert kinds(V1, V) == {BREAKING: {"became_required@note", "nullable_removed@note"}}


def test_making_a_required_field_optional_breaks():
    class V(V1):
        name_code: str = "x"

    assert kinds(V1, V) == {BREAKING: {"became_optional@name_code"}}


def test_making_a_field_nullable_breaks():
    class V(V1):
        name_code: str | None

    assert kinds(V1, V) == {BREAKING: {"nullable_added@name_code"}}


def test_a_new_required_field_breaks():
    class V(V1):
        reason_code: str

    assert kinds(V1, V) == {BREAKING: {"field_added_required@reason_code"}}


@pytest.mark.parametrize("field_def,where", [
    (Field(ge=2, le=20), "minimum raised"),
    (Field(ge=1, le=10), "maximum lowered"),
    (Field(gt=1, le=20), "inclusive to exclusive"),
])
def test_tightening_a_numeric_bound_breaks(field_def, where):
    V = type("V", (V1,), {"__annotations__": {"count": int}, "count": field_def})
    assert kinds(V1, V) == {BREAKING: {"constraint_tightened@count"}}, where


@pytest.mark.parametrize("field_def", [
    Field(pattern=r"^[a-z]+$"), Field(min_length=3), Field(max_length=8),
])
def test_tightening_a_string_constraint_breaks(field_def):
    V = type("V", (V1,), {"__annotations__": {"name_code": str}, "name_code": field_def})
    assert kinds(V1, V) == {BREAKING: {"constraint_tightened@name_code"}}


def test_changing_a_pattern_breaks():
    class A(Base):
        code: str = Field(pattern=r"^[a-z]+$")

    class B(Base):
        code: str = Field(pattern=r"^[a-z0-9]+$")

    # The checker cannot prove one pattern contains the other: any change of pattern is breaking.
    assert kinds(A, B) == {BREAKING: {"constraint_tightened@code"}}
    assert kinds(B, B) == {}


def test_tightening_list_and_dict_constraints_breaks():
    class A(Base):
        items: list[int]
        totals: dict[str, float]

    class B(Base):
        items: list[int] = Field(min_length=1)
        totals: dict[str, int]

    assert kinds(A, B) == {BREAKING: {"constraint_tightened@items", "type_changed@totals{}"}}


def test_adding_a_format_breaks_and_removing_one_is_a_caution():
    class A(Base):
        ref: str

    class B(Base):
        ref: UUID

    assert kinds(A, B) == {BREAKING: {"constraint_tightened@ref"}}
    assert kinds(B, A) == {CAUTION: {"constraint_loosened@ref"}}


def test_forbidding_extra_fields_breaks():
    class Closed(V1):
        model_config = ConfigDict(extra="forbid", frozen=True)

    assert kinds(V1, Closed) == {BREAKING: {"constraint_tightened@"}}


def test_changing_a_default_is_a_caution():
    class A(Base):
        kind: str = "individual"

    class B(Base):
        kind: str = "group"

    assert kinds(A, B) == {CAUTION: {"default_changed@kind"}}


def test_moving_a_type_to_another_topic_or_key_breaks():
    old = {**schema(V1), "x-kafka-topic": "rapport.course", "x-kafka-key": "episode_id"}
    new = {**schema(V1), "x-kafka-topic": "rapport.outcomes", "x-kafka-key": "episode_id"}
    [c] = compare_schemas(old, new, "rapport.test.v1")
    assert (c.level, c.kind) == (BREAKING, "metadata_changed") and "topic" in c.message


def test_removing_a_published_type_breaks():
    report = compare_catalogues({"rapport.test.v1": schema(V1)}, {})
    assert [(c.level, c.kind) for c in report.changes] == [(BREAKING, "type_removed")]
    assert not report.ok()


def test_recursive_models_terminate():
    class Node(Base):
        code: str
        children: list["Node"] = Field(default_factory=list)

    class Node2(Base):
        code: int
        children: list["Node2"] = Field(default_factory=list)

    assert kinds(Node, Node) == {}
    assert BREAKING in kinds(Node, Node2)


# ---------------------------------------------------------------- publishing and the command line

def test_publish_writes_the_baseline_then_refuses_a_breaking_change(tmp_path, monkeypatch, capsys):
    from rapport_tools.contracts import compat

    texts = {"rapport.test.v1": json.dumps(schema(V1))}
    monkeypatch.setattr(compat, "_current_texts", lambda: texts)
    monkeypatch.setattr(compat, "current_catalogue", lambda: {t: json.loads(x) for t, x in texts.items()})
    report, written = publish(tmp_path)
    assert written == ["rapport.test.v1.json"] and report.ok()
    assert main(["--baseline", str(tmp_path)]) == 0

    class Broken(V1):
        count: str

    texts["rapport.test.v1"] = json.dumps(schema(Broken))
    assert main(["--baseline", str(tmp_path)]) == 1
    assert "type_changed" in capsys.readouterr().out
    assert main(["--baseline", str(tmp_path), "--publish"]) == 1
    assert json.loads((tmp_path / "rapport.test.v1.json").read_text()) == schema(V1)  # untouched
    # a caution passes unless --strict
    class Wider(V1):
        colour: ColourWider

    texts["rapport.test.v1"] = json.dumps(schema(Wider))
    assert main(["--baseline", str(tmp_path)]) == 0
    assert main(["--baseline", str(tmp_path), "--strict"]) == 1


def test_against_compares_two_directories(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir(), new.mkdir()
    (old / "rapport.test.v1.json").write_text(json.dumps(schema(V1)))

    class V(V1):
        colour: ColourNarrower

    (new / "rapport.test.v1.json").write_text(json.dumps(schema(V)))
    assert main(["--baseline", str(old), "--against", str(new), "-q"]) == 1
    (new / "rapport.test.v1.json").write_text(json.dumps(schema(V1)))
    assert main(["--baseline", str(old), "--against", str(new)]) == 0
