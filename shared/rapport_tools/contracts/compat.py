"""Compatibility check of the event contracts against the published baseline.

``python -m rapport_tools.contracts.compat``            compare the models with ``published/`` (CI)
``python -m rapport_tools.contracts.compat --publish``  write the baseline (refuses a breaking change)

The baseline ``contracts/published/<type>.json`` is the JSON Schema of every event type version as
partners last received it (written by ``--publish`` when a release publishes the contract, then left
alone while the models move on: it is what the current models are checked against, not a copy of
them). The current schemas are rendered from the pydantic models (``export.render``).

A published type version must stay readable both ways, because topics are kept and replayed:

* **old readers, new records** — a consumer built against the published schema must still find every
  field it relies on, with the same type and meaning;
* **new readers, old records** — the current model must still accept every record already on the
  topics (a replay from the beginning reads them all).

So, for the same type version, these are **breaking** (exit status 1):

=========================  ====================================================================
``type_removed``           a published type version is no longer in the catalogue
``metadata_changed``       its topic or record key changed
``field_removed``          a field is gone (``renamed`` when a field of the same schema appeared)
``type_changed``           a field's JSON type changed (string → integer, object → array, ...)
``nullable_added``         a field may now be ``null`` where a value was guaranteed
``nullable_removed``       ``null`` is no longer accepted (old records holding it are rejected)
``enum_narrowed``          enum values were removed (old records holding them are rejected)
``became_required``        an optional field is now required (old records without it are rejected)
``became_optional``        a required field may now be absent (readers relied on it)
``field_added_required``   a new field is required (no old record has it)
``constraint_tightened``   minimum/maximum, lengths, item counts, pattern, format, multipleOf,
                           uniqueItems, additionalProperties closed, propertyNames: fewer values
=========================  ====================================================================

**Caution** (reported; exit 0 unless ``--strict``): the contract grows in a way the catalogue's rules
allow but a *strict* old validator would notice — ``enum_widened`` (readers must tolerate unknown
codes), ``constraint_loosened``, ``default_changed``.

**Safe**: ``field_added_optional``, ``type_added`` (including a ``.v2`` next to an unchanged ``.v1``),
``schema_uri_changed`` (the ``$id``, hence ``ce_dataschema``, names the schema somewhere else: a URI
that identifies it, not part of what a record holds; readers select the schema by ``ce_type``), and
any change of titles, descriptions or ``examples`` (annotations, not compared).

A breaking change therefore comes as a new type version: add ``FooV2`` (``rapport.foo.v2``) beside
the unchanged ``FooV1``, publish both, and retire v1 only when nobody produces or replays it any more
(``--publish --allow-breaking`` then drops its baseline file, in a reviewed commit).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

PUBLISHED_DIR = Path(__file__).parent / "published"

BREAKING, CAUTION, SAFE = "breaking", "caution", "safe"
_LEVEL_ORDER = {BREAKING: 0, CAUTION: 1, SAFE: 2}

Schema = dict[str, Any]


@dataclass(frozen=True)
class Change:
    level: str  # breaking | caution | safe
    kind: str
    event_type: str
    path: str  # "" for the type itself, "focus.primary", "sessions[].number", "answers{}"
    message: str

    def __str__(self) -> str:
        where = f"{self.event_type}" + (f" :: {self.path}" if self.path else "")
        return f"{self.level.upper():9} {self.kind:22} {where}: {self.message}"


@dataclass
class Report:
    changes: list[Change] = field(default_factory=list)

    @property
    def breaking(self) -> list[Change]:
        return [c for c in self.changes if c.level == BREAKING]

    @property
    def cautions(self) -> list[Change]:
        return [c for c in self.changes if c.level == CAUTION]

    def ok(self, strict: bool = False) -> bool:
        return not self.breaking and not (strict and self.cautions)

    def sorted(self) -> list[Change]:
        return sorted(self.changes, key=lambda c: (_LEVEL_ORDER[c.level], c.event_type, c.path, c.kind))


# --------------------------------------------------------------------------------------------
# Schema navigation


class _Root:
    """One schema document: resolves local ``$ref`` (``#/$defs/X``, ``#/definitions/X``, any
    JSON pointer into the document)."""

    def __init__(self, doc: Schema) -> None:
        self.doc = doc

    def resolve(self, node: Any) -> Schema:
        seen = 0
        while isinstance(node, dict) and "$ref" in node:
            ref = node["$ref"]
            if not isinstance(ref, str) or not ref.startswith("#"):
                raise ValueError(f"only local $ref is supported, got {ref!r}")
            target: Any = self.doc
            for part in [p for p in ref[1:].split("/") if p]:
                target = target[part.replace("~1", "/").replace("~0", "~")]
            siblings = {k: v for k, v in node.items() if k != "$ref"}
            node = {**target, **siblings} if siblings else target
            seen += 1
            if seen > 64:
                raise ValueError(f"$ref loop at {ref}")
        if isinstance(node, dict) and set(node) >= {"allOf"} and len(node["allOf"]) == 1:
            rest = {k: v for k, v in node.items() if k != "allOf"}
            return {**self.resolve(node["allOf"][0]), **rest}
        if node is True or node is None:
            return {}
        if node is False:
            return {"not": {}}
        return node

    def variants(self, node: Any) -> list[Schema]:
        """The alternatives a value may take (anyOf/oneOf flattened; ``type: [a, b]`` split)."""
        node = self.resolve(node)
        for key in ("anyOf", "oneOf"):
            if key in node:
                rest = {k: v for k, v in node.items() if k not in (key, "default", "description", "title")}
                out: list[Schema] = []
                for alt in node[key]:
                    for v in self.variants(alt):
                        out.append({**rest, **v} if rest else v)
                return out
        t = node.get("type")
        if isinstance(t, list):
            return [{**node, "type": one} for one in t]
        return [node]


_ENUM_TYPES = ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"), (type(None), "null"),
               (list, "array"), (dict, "object"))


def _json_type(value: Any) -> str:
    for py, name in _ENUM_TYPES:
        if isinstance(value, py):
            return name
    return "any"


def _kind(node: Schema) -> str:
    if "type" in node:
        return str(node["type"])
    values = node["enum"] if "enum" in node else [node["const"]] if "const" in node else None
    if values:
        kinds = {_json_type(v) for v in values}
        return kinds.pop() if len(kinds) == 1 else "any"
    if "properties" in node or "additionalProperties" in node:
        return "object"
    if "items" in node or "prefixItems" in node:
        return "array"
    return "any"


def _enum(node: Schema) -> list | None:
    if "enum" in node:
        return list(node["enum"])
    if "const" in node:
        return [node["const"]]
    return None


def _fmt(values: Iterable[Any]) -> str:
    return ", ".join(json.dumps(v) for v in sorted(values, key=lambda v: json.dumps(v)))


# --------------------------------------------------------------------------------------------
# Comparison


class _Comparer:
    def __init__(self, event_type: str, old: Schema, new: Schema) -> None:
        self.event_type = event_type
        self.old = _Root(old)
        self.new = _Root(new)
        self.changes: list[Change] = []
        self._active: set[tuple[int, int]] = set()

    def add(self, level: str, kind: str, path: str, message: str) -> None:
        self.changes.append(Change(level, kind, self.event_type, path, message))

    # a value position (a property, an array item, a dict value)
    def value(self, old: Any, new: Any, path: str) -> None:
        if len(self._active) > 64:  # recursion deeper than any real contract: stop descending
            return
        marker = (id(self.old.resolve(old)), id(self.new.resolve(new)))
        if marker in self._active:  # a recursive model: this pair is being compared further up
            return
        self._active.add(marker)
        try:
            self._value(old, new, path)
        finally:
            self._active.discard(marker)

    def _value(self, old: Any, new: Any, path: str) -> None:
        ov, nv = self.old.variants(old), self.new.variants(new)
        o_null = any(_kind(v) == "null" for v in ov)
        n_null = any(_kind(v) == "null" for v in nv)
        ov = [v for v in ov if _kind(v) != "null"]
        nv = [v for v in nv if _kind(v) != "null"]
        if o_null and not n_null:
            self.add(BREAKING, "nullable_removed", path, "null is no longer accepted (records holding null are rejected)")
        if n_null and not o_null:
            self.add(BREAKING, "nullable_added", path, "may now be null where a value was guaranteed")
        if len(ov) == 1 and len(nv) == 1:
            self.single(ov[0], nv[0], path)
            return
        if not ov or not nv:
            if ov != nv:
                self.add(BREAKING, "type_changed", path, "changed between null-only and a value")
            return
        by_kind_old: dict[str, list[Schema]] = {}
        by_kind_new: dict[str, list[Schema]] = {}
        for v in ov:
            by_kind_old.setdefault(_kind(v), []).append(v)
        for v in nv:
            by_kind_new.setdefault(_kind(v), []).append(v)
        for k in sorted(set(by_kind_old) - set(by_kind_new)):
            self.add(BREAKING, "type_changed", path, f"no longer accepts {k} (one of its alternatives was removed)")
        for k in sorted(set(by_kind_new) - set(by_kind_old)):
            self.add(BREAKING, "type_changed", path, f"may now be {k} (a new alternative readers do not expect)")
        for k in sorted(set(by_kind_old) & set(by_kind_new)):
            for o, n in zip(by_kind_old[k], by_kind_new[k]):
                self.single(o, n, path)

    def single(self, o: Schema, n: Schema, path: str) -> None:
        ko, kn = _kind(o), _kind(n)
        if ko != kn:
            self.add(BREAKING, "type_changed", path, f"type changed from {ko} to {kn}")
            return
        self.enum(o, n, path)
        self.formats(o, n, path)
        self.bounds(o, n, path)
        if ko == "array":
            self.array(o, n, path)
        elif ko == "object":
            self.object(o, n, path)

    def enum(self, o: Schema, n: Schema, path: str) -> None:
        oe, ne = _enum(o), _enum(n)
        if oe is None and ne is None:
            return
        if oe is None:
            self.add(BREAKING, "enum_narrowed", path, f"now restricted to {_fmt(ne)}")
            return
        if ne is None:
            self.add(CAUTION, "enum_widened", path, f"no longer restricted to {_fmt(oe)}")
            return
        removed = [v for v in oe if v not in ne]
        added = [v for v in ne if v not in oe]
        if removed:
            self.add(BREAKING, "enum_narrowed", path, f"values removed: {_fmt(removed)}")
        if added:
            self.add(CAUTION, "enum_widened", path,
                     f"values added: {_fmt(added)} (readers must tolerate codes they do not know)")

    def _string_keyword(self, key: str, o: Schema, n: Schema, path: str, what: str) -> None:
        a, b = o.get(key), n.get(key)
        if a == b:
            return
        if a is None:
            self.add(BREAKING, "constraint_tightened", path, f"{what} {b!r} added")
        elif b is None:
            self.add(CAUTION, "constraint_loosened", path, f"{what} {a!r} removed")
        else:
            self.add(BREAKING, "constraint_tightened", path, f"{what} changed from {a!r} to {b!r}")

    def formats(self, o: Schema, n: Schema, path: str) -> None:
        self._string_keyword("format", o, n, path, "format")
        self._string_keyword("pattern", o, n, path, "pattern")
        self._string_keyword("multipleOf", o, n, path, "multipleOf")
        if o.get("uniqueItems", False) != n.get("uniqueItems", False):
            if n.get("uniqueItems"):
                self.add(BREAKING, "constraint_tightened", path, "items must now be unique")
            else:
                self.add(CAUTION, "constraint_loosened", path, "items need no longer be unique")
        if o.get("propertyNames") != n.get("propertyNames"):
            pn_o, pn_n = o.get("propertyNames"), n.get("propertyNames")
            if pn_o is None:
                self.add(BREAKING, "constraint_tightened", path, f"propertyNames {json.dumps(pn_n)} added")
            elif pn_n is None:
                self.add(CAUTION, "constraint_loosened", path, "propertyNames restriction removed")
            else:
                self.value(pn_o, pn_n, f"{path}{{keys}}")

    @staticmethod
    def _lower(s: Schema) -> tuple[float, bool]:
        lo, excl = -math.inf, False
        if "minimum" in s:
            lo = s["minimum"]
        if "exclusiveMinimum" in s and not isinstance(s["exclusiveMinimum"], bool):
            if s["exclusiveMinimum"] >= lo:
                lo, excl = s["exclusiveMinimum"], True
        return lo, excl

    @staticmethod
    def _upper(s: Schema) -> tuple[float, bool]:
        hi, excl = math.inf, False
        if "maximum" in s:
            hi = s["maximum"]
        if "exclusiveMaximum" in s and not isinstance(s["exclusiveMaximum"], bool):
            if s["exclusiveMaximum"] <= hi:
                hi, excl = s["exclusiveMaximum"], True
        return hi, excl

    def bounds(self, o: Schema, n: Schema, path: str) -> None:
        (olo, oex), (nlo, nex) = self._lower(o), self._lower(n)
        if (olo, oex) != (nlo, nex):
            tighter = nlo > olo or (nlo == olo and nex and not oex)
            self._bound(tighter, path, "lower bound", _bound_text(olo, oex, ">"), _bound_text(nlo, nex, ">"))
        (ohi, oex), (nhi, nex) = self._upper(o), self._upper(n)
        if (ohi, oex) != (nhi, nex):
            tighter = nhi < ohi or (nhi == ohi and nex and not oex)
            self._bound(tighter, path, "upper bound", _bound_text(ohi, oex, "<"), _bound_text(nhi, nex, "<"))
        for lo_key, hi_key in (("minLength", "maxLength"), ("minItems", "maxItems"),
                               ("minProperties", "maxProperties")):
            a, b = o.get(lo_key, 0), n.get(lo_key, 0)
            if a != b:
                self._bound(b > a, path, lo_key, str(a), str(b))
            a, b = o.get(hi_key, math.inf), n.get(hi_key, math.inf)
            if a != b:
                self._bound(b < a, path, hi_key, str(a), str(b))

    def _bound(self, tighter: bool, path: str, what: str, before: str, after: str) -> None:
        if tighter:
            self.add(BREAKING, "constraint_tightened", path, f"{what} tightened from {before} to {after}")
        else:
            self.add(CAUTION, "constraint_loosened", path, f"{what} loosened from {before} to {after}")

    def array(self, o: Schema, n: Schema, path: str) -> None:
        if "items" in o or "items" in n:
            self.value(o.get("items", {}), n.get("items", {}), f"{path}[]")
        po, pn = o.get("prefixItems", []), n.get("prefixItems", [])
        for i, (a, b) in enumerate(zip(po, pn)):
            self.value(a, b, f"{path}[{i}]")
        if len(po) != len(pn):
            self.add(BREAKING, "type_changed", path, f"tuple length changed from {len(po)} to {len(pn)}")

    def object(self, o: Schema, n: Schema, path: str) -> None:
        op, np_ = o.get("properties", {}), n.get("properties", {})
        oreq, nreq = set(o.get("required", [])), set(n.get("required", []))
        prefix = f"{path}." if path else ""
        removed = [k for k in op if k not in np_]
        added = [k for k in np_ if k not in op]
        for name in removed:
            twins = [a for a in added if self._same(op[name], np_[a])]
            hint = f" (renamed to {twins[0]!r}? a rename is a removal for every reader)" if twins else ""
            self.add(BREAKING, "field_removed", prefix + name, f"field removed{hint}")
        for name in added:
            if name in nreq:
                self.add(BREAKING, "field_added_required", prefix + name, "new required field (no earlier record has it)")
            else:
                self.add(SAFE, "field_added_optional", prefix + name, "new optional field")
        for name in op:
            if name not in np_:
                continue
            if name in oreq and name not in nreq:
                self.add(BREAKING, "became_optional", prefix + name, "required field may now be absent")
            if name not in oreq and name in nreq:
                self.add(BREAKING, "became_required", prefix + name,
                         "optional field is now required (records without it are rejected)")
            od, nd = self.old.resolve(op[name]).get("default", _MISSING), self.new.resolve(np_[name]).get("default", _MISSING)
            if name not in nreq and od != nd and not (od is _MISSING or nd is _MISSING):
                self.add(CAUTION, "default_changed", prefix + name,
                         f"default changed from {json.dumps(od)} to {json.dumps(nd)} (absent means something else now)")
            self.value(op[name], np_[name], prefix + name)
        self.additional(o, n, path)

    def additional(self, o: Schema, n: Schema, path: str) -> None:
        a, b = o.get("additionalProperties", True), n.get("additionalProperties", True)
        a_schema, b_schema = isinstance(a, dict) and a != {}, isinstance(b, dict) and b != {}
        a_open = a is True or a == {}
        b_open = b is True or b == {}
        if a_schema and b_schema:
            self.value(a, b, f"{path}{{}}")
        elif a_open and not b_open:
            self.add(BREAKING, "constraint_tightened", path,
                     "additional properties now " + ("restricted" if b_schema else "forbidden"))
        elif b_open and not a_open:
            self.add(CAUTION, "constraint_loosened", path, "additional properties now allowed")
        elif a is False and b_schema:
            self.add(CAUTION, "constraint_loosened", path, "additional properties now allowed (with a schema)")
        elif a_schema and b is False:
            self.add(BREAKING, "constraint_tightened", path, "additional properties now forbidden")

    def _same(self, a: Any, b: Any) -> bool:
        probe = _Comparer(self.event_type, self.old.doc, self.new.doc)
        probe.value(a, b, "")
        return not [c for c in probe.changes if c.level != SAFE]


_MISSING = object()


def _bound_text(value: float, exclusive: bool, op: str) -> str:
    if math.isinf(value):
        return "none"
    return f"{op}{'' if exclusive else '='} {value:g}" if isinstance(value, float) else f"{op}{'' if exclusive else '='} {value}"


_METADATA = (("x-kafka-topic", "topic"), ("x-kafka-key", "record key"), ("x-cloudevents-type", "CloudEvents type"))


def compare_schemas(old: Schema, new: Schema, event_type: str = "") -> list[Change]:
    """Every difference that matters between the published ``old`` and the current ``new`` schema
    of one event type version."""
    event_type = event_type or str(new.get("x-cloudevents-type") or old.get("x-cloudevents-type") or new.get("title", ""))
    c = _Comparer(event_type, old, new)
    for key, what in _METADATA:
        if key in old and old.get(key) != new.get(key):
            c.add(BREAKING, "metadata_changed", "", f"{what} changed from {old.get(key)!r} to {new.get(key)!r}")
    if "$id" in old and old.get("$id") != new.get("$id"):
        c.add(SAFE, "schema_uri_changed", "", f"$id (ce_dataschema) changed from {old.get('$id')!r} to "
                                              f"{new.get('$id')!r}")
    c.value(old, new, "")
    return c.changes


_VERSION = re.compile(r"^(?P<base>.+)\.v(?P<n>\d+)$")


def compare_catalogues(published: dict[str, Schema], current: dict[str, Schema]) -> Report:
    report = Report()
    for t in sorted(published):
        if t not in current:
            report.changes.append(Change(BREAKING, "type_removed", t, "",
                                         "published type version removed (keep it until nobody produces or replays it)"))
            continue
        report.changes.extend(compare_schemas(published[t], current[t], t))
    for t in sorted(set(current) - set(published)):
        m = _VERSION.match(t)
        siblings = sorted(p for p in published if m and (pm := _VERSION.match(p)) and pm["base"] == m["base"])
        note = f"new version beside {', '.join(siblings)}" if siblings else "new event type"
        report.changes.append(Change(SAFE, "type_added", t, "", note))
    return report


# --------------------------------------------------------------------------------------------
# Catalogues on disk and from the models


def load_dir(directory: Path) -> dict[str, Schema]:
    out = {}
    for path in sorted(Path(directory).glob("*.json")):
        doc = json.loads(path.read_text())
        out[doc.get("x-cloudevents-type") or path.stem] = doc
    return out


def current_catalogue() -> dict[str, Schema]:
    from rapport_shared.contracts import EVENT_MODELS
    from .export import render

    return {t: json.loads(render(t)) for t in sorted(EVENT_MODELS)}


def _current_texts() -> dict[str, str]:
    from rapport_shared.contracts import EVENT_MODELS
    from .export import render

    return {t: render(t) for t in sorted(EVENT_MODELS)}


def check(baseline: Path = PUBLISHED_DIR, current: dict[str, Schema] | None = None) -> Report:
    return compare_catalogues(load_dir(baseline), current if current is not None else current_catalogue())


def publish(baseline: Path = PUBLISHED_DIR, *, allow_breaking: bool = False) -> tuple[Report, list[str]]:
    """Write the current schemas as the new baseline. Refuses (writes nothing) when the change is
    breaking unless ``allow_breaking``; then a removed type's baseline file is deleted too."""
    texts = _current_texts()
    report = compare_catalogues(load_dir(baseline) if baseline.exists() else {},
                                {t: json.loads(x) for t, x in texts.items()})
    if report.breaking and not allow_breaking:
        return report, []
    baseline.mkdir(parents=True, exist_ok=True)
    written = []
    for t, text in texts.items():
        path = baseline / f"{t}.json"
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            written.append(path.name)
    for path in baseline.glob("*.json"):
        if path.stem not in texts:
            path.unlink()
            written.append(f"-{path.name}")
    return report, written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rapport_tools.contracts.compat",
                                description="Check the event contracts against the published baseline.")
    p.add_argument("--baseline", type=Path, default=PUBLISHED_DIR, help="directory of published schemas")
    p.add_argument("--against", type=Path, default=None,
                   help="compare this directory of schemas instead of the models (e.g. another checkout)")
    p.add_argument("--publish", "--snapshot", dest="publish", action="store_true",
                   help="write the current schemas as the new baseline (refuses a breaking change)")
    p.add_argument("--allow-breaking", action="store_true",
                   help="with --publish: accept breaking changes (unreleased types, or retiring a version)")
    p.add_argument("--strict", action="store_true", help="fail on cautions too (enum widened, constraint loosened)")
    p.add_argument("--json", action="store_true", help="print the changes as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="print only breaking changes and cautions")
    args = p.parse_args(argv)

    if args.publish:
        report, written = publish(args.baseline, allow_breaking=args.allow_breaking)
        _print(report, args)
        if report.breaking and not args.allow_breaking:
            print(f"refused: {len(report.breaking)} breaking change(s); publish a new type version (.v2) instead "
                  "(or --allow-breaking for a type never released)", file=sys.stderr)
            return 1
        print(f"baseline {args.baseline}: {len(written)} file(s) written" + (f": {', '.join(written)}" if written else ""))
        return 0

    current = load_dir(args.against) if args.against else None
    report = check(args.baseline, current)
    _print(report, args)
    ok = report.ok(strict=args.strict)
    n_types = len(current if current is not None else current_catalogue())
    summary = (f"{n_types} type version(s) checked against {len(load_dir(args.baseline))} published: "
               f"{len(report.breaking)} breaking, {len(report.cautions)} caution(s), "
               f"{len(report.changes) - len(report.breaking) - len(report.cautions)} safe change(s)")
    print(("OK: " if ok else "FAIL: ") + summary, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


def _print(report: Report, args: argparse.Namespace) -> None:
    changes = report.sorted()
    if args.json:
        print(json.dumps([asdict(c) for c in changes], indent=2))
        return
    for c in changes:
        if args.quiet and c.level == SAFE:
            continue
        print(c)


if __name__ == "__main__":
    sys.exit(main())
