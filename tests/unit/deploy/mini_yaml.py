"""A strict reader for the YAML that deploy/k8s uses (PyYAML is not a dependency of this workspace).

It reads the manifests as written and what ``kustomize build`` prints: documents split by ``---``,
comments, block mappings and block sequences (indented under their key or not), ``- key: value``
items, plain, single- and double-quoted scalars, and one-line flow sequences of scalars
(``["run"]``, ``[]``) or ``{}``. Plain scalars resolve as in YAML 1.2's core schema (null, true and
false, integers, floats, otherwise strings).

Everything else raises ``YamlSubsetError`` naming the file and line instead of being guessed:
anchors, aliases, tags, block scalars (``|``, ``>``), multi-line scalars, complex keys, duplicate
keys, and the plain scalars that YAML 1.1 readers (which Kubernetes tooling partly still is) read
differently from YAML 1.2 — ``yes``/``no``/``on``/``off``, ``0755``, ``1_000``, ``09:00``,
``2026-01-01``: quote those. A manifest that this module reads is therefore read the same way by
any YAML parser.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["YamlSubsetError", "load_all"]


class YamlSubsetError(ValueError):
    pass


@dataclass
class _Line:
    no: int  # 1-based line number in the source
    indent: int  # columns of leading spaces
    text: str  # the content: no indentation, no comment, no trailing blanks


_INT = re.compile(r"[-+]?(0|[1-9][0-9]*)")
_FLOAT = re.compile(r"[-+]?([0-9]+\.[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?")
# Plain scalars that YAML 1.1 and 1.2 readers resolve differently (or that look like a typo'd number).
_AMBIGUOUS = [
    re.compile(r"(?i)(y|n|yes|no|on|off)"),  # YAML 1.1 booleans
    re.compile(r"[-+]?0[0-9]+"),  # 1.1 octal
    re.compile(r"[-+]?0[xXoObB][0-9a-fA-F_]+"),  # hex / octal / binary forms
    re.compile(r"[-+]?[0-9][0-9_]*_[0-9_]*(\.[0-9_]*)?"),  # 1.1 numbers with underscores
    re.compile(r"[-+]?[0-9]+(:[0-5]?[0-9])+(\.[0-9]*)?"),  # 1.1 sexagesimal (09:00 is 540)
    re.compile(r"[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}([Tt ].*)?"),  # 1.1 timestamps
    re.compile(r"(?i)[-+]?\.(inf|nan)"),
]
_NULLS = {"~", "null", "Null", "NULL"}
_TRUE = {"true", "True", "TRUE"}
_FALSE = {"false", "False", "FALSE"}


def load_all(text: str, source: str = "<string>") -> list[Any]:
    """Every non-empty document of ``text``, as dicts, lists and scalars."""
    documents: list[list[_Line]] = [[]]
    for no, raw in enumerate(text.splitlines(), 1):
        if re.fullmatch(r"---(\s+#.*)?\s*", raw):
            documents.append([])
            continue
        if raw.startswith("--- ") or raw.rstrip() == "..." or raw.startswith("%"):
            raise YamlSubsetError(f"{source}:{no}: document markers with content, '...' and directives are not supported")
        leading = raw[: len(raw) - len(raw.lstrip(" \t"))]
        if "\t" in leading:
            raise YamlSubsetError(f"{source}:{no}: tab in indentation")
        content = _strip_comment(raw, source, no).rstrip()
        if not content.strip():
            continue
        indent = len(content) - len(content.lstrip(" "))
        documents[-1].append(_Line(no, indent, content.strip()))
    out = []
    for lines in documents:
        if not lines:
            continue  # empty or comments only: kustomize ignores such a document too
        parser = _Parser(lines, source)
        if lines[0].indent != 0:
            parser.fail(lines[0], "a document must start at column 0")
        value = parser.block(0)
        if parser.i != len(lines):
            parser.fail(lines[parser.i], "unexpected content (wrong indentation?)")
        out.append(value)
    return out


def _strip_comment(raw: str, source: str, no: int) -> str:
    """``raw`` without its comment; a quote opens a string only where a scalar may start."""
    quote = None
    i = 0
    while i < len(raw):
        ch = raw[i]
        if quote == '"':
            if ch == "\\":
                i += 2
                continue
            if ch == '"':
                quote = None
        elif quote == "'":
            if ch == "'":
                if raw[i + 1 : i + 2] == "'":
                    i += 2
                    continue
                quote = None
        elif ch == "#" and (i == 0 or raw[i - 1] in " \t"):
            return raw[:i]
        elif ch in "\"'" and (i == 0 or raw[i - 1] in " \t[{,:"):
            quote = ch
        i += 1
    if quote:
        raise YamlSubsetError(f"{source}:{no}: unterminated or multi-line quoted scalar")
    return raw


def _is_item(text: str) -> bool:
    return text == "-" or text.startswith("- ")


def _split_key(text: str) -> tuple[str, str] | None:
    """``(key, rest)`` when ``text`` is ``key: rest`` / ``key:``; None when it is a scalar."""
    if text[:1] in "\"'":
        end = _quoted_end(text)
        if end is None:
            return None
        after = text[end:]
        if after == ":" or after.startswith(": "):
            return _quoted(text[:end]), after[1:].strip()
        return None
    m = re.search(r":( |$)", text)
    if not m:
        return None
    key = text[: m.start()]
    if not key or key[0] in "[]{}&*!|>%@`?,#-" and not re.match(r"-[^ ]", key):
        raise YamlSubsetError(f"unsupported key {key!r}")
    return key, text[m.end() :].strip()


def _quoted_end(text: str) -> int | None:
    """Index just past the quoted scalar that starts ``text``."""
    q = text[0]
    i = 1
    while i < len(text):
        if q == '"' and text[i] == "\\":
            i += 2
            continue
        if text[i] == q:
            if q == "'" and text[i + 1 : i + 2] == "'":
                i += 2
                continue
            return i + 1
        i += 1
    return None


def _quoted(token: str) -> str:
    if token[0] == "'":
        return token[1:-1].replace("''", "'")
    try:
        return json.loads(token)  # YAML's common double-quoted escapes are JSON's
    except json.JSONDecodeError as exc:
        raise YamlSubsetError(f"unsupported escape in {token!r}") from exc


def _plain(token: str) -> Any:
    if token in _NULLS:
        return None
    if token in _TRUE:
        return True
    if token in _FALSE:
        return False
    if _INT.fullmatch(token):
        return int(token)
    if _FLOAT.fullmatch(token):
        return float(token)
    if any(p.fullmatch(token) for p in _AMBIGUOUS):
        raise YamlSubsetError(f"plain scalar {token!r} reads differently in YAML 1.1 and 1.2: quote it")
    if token[0] in "&*!|>%@`" or ": " in token or token.endswith(":") or " #" in token:
        raise YamlSubsetError(f"unsupported plain scalar {token!r} (anchor, alias, tag, block scalar or stray ':')")
    return token


class _Parser:
    def __init__(self, lines: list[_Line], source: str) -> None:
        self.lines, self.i, self.source = lines, 0, source

    def fail(self, line: _Line, msg: str) -> None:
        raise YamlSubsetError(f"{self.source}:{line.no}: {msg}")

    def block(self, indent: int) -> Any:
        line = self.lines[self.i]
        return self.sequence(indent) if _is_item(line.text) else self.mapping(indent)

    def mapping(self, indent: int) -> dict:
        out: dict = {}
        while self.i < len(self.lines):
            line = self.lines[self.i]
            if line.indent < indent:
                break
            if line.indent > indent:
                self.fail(line, "unexpected indentation")
            if _is_item(line.text):
                break  # a sequence at a parent's key level ends this mapping
            try:
                kv = _split_key(line.text)
            except YamlSubsetError as exc:
                self.fail(line, str(exc))
            if kv is None:
                self.fail(line, "expected 'key: value' (multi-line scalars are not supported)")
            key, rest = kv
            if key in out:
                self.fail(line, f"duplicate key {key!r}")
            self.i += 1
            if rest:
                out[key] = self.scalar(rest, line)
                continue
            nxt = self.lines[self.i] if self.i < len(self.lines) else None
            if nxt is not None and (nxt.indent > indent or (nxt.indent == indent and _is_item(nxt.text))):
                out[key] = self.block(nxt.indent)
            else:
                out[key] = None
        return out

    def sequence(self, indent: int) -> list:
        out: list = []
        while self.i < len(self.lines):
            line = self.lines[self.i]
            if line.indent < indent or not _is_item(line.text):
                break
            if line.indent > indent:
                self.fail(line, "unexpected indentation")
            rest = line.text[1:].lstrip(" ")
            if not rest:
                self.i += 1
                nxt = self.lines[self.i] if self.i < len(self.lines) else None
                if nxt is None or nxt.indent <= indent:
                    out.append(None)
                else:
                    out.append(self.block(nxt.indent))
                continue
            if _is_item(rest):
                self.fail(line, "nested '- -' sequences are not supported")
            try:
                kv = _split_key(rest)
            except YamlSubsetError as exc:
                self.fail(line, str(exc))
            if kv is not None:
                # "- key: value": a mapping whose keys sit at the column of "key".
                column = indent + (len(line.text) - len(rest))
                self.lines[self.i] = _Line(line.no, column, rest)
                out.append(self.mapping(column))
            else:
                self.i += 1
                out.append(self.scalar(rest, line))
        return out

    def scalar(self, token: str, line: _Line) -> Any:
        try:
            if token[0] in "\"'":
                end = _quoted_end(token)
                if end != len(token):
                    self.fail(line, f"unexpected text after a quoted scalar: {token!r}")
                return _quoted(token)
            if token[0] == "[":
                if not token.endswith("]"):
                    self.fail(line, "a flow sequence must close on its line")
                return [self.scalar(t, line) for t in _flow_items(token[1:-1])]
            if token[0] == "{":
                if token.replace(" ", "") != "{}":
                    self.fail(line, "only the empty flow mapping {} is supported")
                return {}
            return _plain(token)
        except YamlSubsetError as exc:
            if str(exc).startswith(f"{self.source}:"):
                raise
            self.fail(line, str(exc))


def _flow_items(inner: str) -> list[str]:
    items, i, start = [], 0, 0
    if not inner.strip():
        return []
    while i < len(inner):
        ch = inner[i]
        if ch in "\"'" and not inner[start:i].strip():
            end = _quoted_end(inner[i:])
            if end is None:
                raise YamlSubsetError("unterminated quoted scalar in a flow sequence")
            i += end
            continue
        if ch in "[]{}":
            raise YamlSubsetError("nested flow collections are not supported")
        if ch == ",":
            items.append(inner[start:i].strip())
            start = i + 1
        i += 1
    items.append(inner[start:].strip())
    if any(not t for t in items):
        raise YamlSubsetError("empty item in a flow sequence")
    return items
