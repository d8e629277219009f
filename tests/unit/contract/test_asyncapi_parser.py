"""docs/asyncapi.json read by the official AsyncAPI parser (``@asyncapi/parser`` from npm, pinned by
``tools/asyncapi/package-lock.json``), as partners' tools read it: no error, no warning.

Needs node (``node``) and the parser installed by ``npm ci --prefix tools/asyncapi`` (deploy/test.sh
does it before pytest). Skipped only where node itself is missing."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from rapport_tools.contracts.export import repo_root

pytestmark = pytest.mark.unit

ROOT = repo_root()
TOOL = ROOT / "tools" / "asyncapi"
NODE = shutil.which("node")

needs_node = pytest.mark.skipif(NODE is None, reason="node is not installed (Debian: apt-get install nodejs npm); "
                                                     "the AsyncAPI document is not validated by the official parser here")


def validate(path: Path) -> dict:
    if not (TOOL / "node_modules" / "@asyncapi" / "parser").is_dir():
        pytest.fail("the AsyncAPI parser is not installed: run `npm ci --prefix tools/asyncapi` (deploy/test.sh does)")
    proc = subprocess.run([NODE, str(TOOL / "validate.mjs"), str(path), "--json"], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert proc.returncode in (0, 1), f"validate.mjs failed (exit {proc.returncode}):\n{proc.stderr}"
    result = json.loads(proc.stdout)
    assert (proc.returncode == 0) == (result["errors"] == 0)
    return result


def _problems(result: dict, *severities: str) -> str:
    return "\n".join(f"{d['severity']} {d['code']} {d['path']}: {d['message']}"
                     for d in result["diagnostics"] if d["severity"] in severities)


@needs_node
def test_the_official_parser_reads_the_committed_document_without_error_or_warning():
    result = validate(ROOT / "docs" / "asyncapi.json")
    assert result["parsed"]
    assert result["errors"] == 0, _problems(result, "error")
    assert result["warnings"] == 0, _problems(result, "warning")


@needs_node
def test_the_parser_reports_a_broken_document(tmp_path):
    """The check is not vacuous: a dangling reference and a field the AsyncAPI schema forbids are errors."""
    doc = json.loads((ROOT / "docs" / "asyncapi.json").read_text())
    first = next(iter(doc["operations"].values()))
    first["channel"] = {"$ref": "#/channels/rapport.nowhere"}
    next(iter(doc["components"]["messages"].values()))["examples"][0]["x-kafka-key"] = "not allowed here"
    broken = tmp_path / "asyncapi.json"
    broken.write_text(json.dumps(doc))
    result = validate(broken)
    assert result["errors"] >= 2, result
    assert "x-kafka-key" in _problems(result, "error") and "rapport.nowhere" in _problems(result, "error")


def test_the_parser_is_pinned_by_a_committed_lock_file():
    package = json.loads((TOOL / "package.json").read_text())
    lock = json.loads((TOOL / "package-lock.json").read_text())
    assert package["dependencies"]["@asyncapi/parser"] == lock["packages"]["node_modules/@asyncapi/parser"]["version"]
    assert (TOOL / ".gitignore").read_text().split() == ["node_modules/"]
    assert "ignore-scripts=true" in (TOOL / ".npmrc").read_text().split()
