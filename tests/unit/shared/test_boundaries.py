"""The package boundaries of issue #12: the runtime core (rapport_shared) imports no tool, test or
service module and has no import cycle; installing it brings no test dependency; the tools import
no test support; no service imports another, and a service's run-time code imports only the core."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest
from packaging.requirements import Requirement

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
SHARED = ROOT / "shared"
SERVICE_PACKAGES = sorted(p for p in (ROOT / "services").glob("*/rapport_*") if (p / "__init__.py").exists())
TEST_ONLY = ("pytest", "_pytest", "aiosmtpd", "testcontainers", "hypothesis", "hypothesis_jsonschema")
TOOL_ONLY = ("typer", "rich", "confluent_kafka", "uvicorn")  # the tools' dependencies, not the core's
# The runtime core and the partner contract it re-exports (rapport_shared.contracts, .envelope).
CORE = ("rapport_shared", "rapport_contracts")
# What a partner must not get by installing rapport-contracts: a server, a database or Kafka client.
SERVER_ONLY = ("fastapi", "starlette", "uvicorn", "asyncpg", "aiokafka", "confluent_kafka", "faststream", "structlog",
               "prometheus_client")

IMPORT_ALL = """
import importlib, json, pkgutil, sys
pkg = importlib.import_module(sys.argv[1])
for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
    if not info.name.endswith("__main__"):
        importlib.import_module(info.name)
print(json.dumps(sorted(sys.modules)))
"""


def modules_after_importing(package: str) -> list[str]:
    """Every module loaded by importing each module of ``package``, in a fresh interpreter."""
    out = subprocess.run([sys.executable, "-c", IMPORT_ALL, package], capture_output=True, text=True, timeout=120,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


def top(name: str) -> str:
    return name.split(".", 1)[0]


def test_the_runtime_core_imports_no_tool_test_or_service_module():
    loaded = modules_after_importing("rapport_shared")
    assert "rapport_shared.runtime" in loaded and "rapport_shared.http.app" in loaded
    wrong = sorted({top(m) for m in loaded
                    if (top(m).startswith("rapport_") and top(m) not in CORE) or top(m) in TEST_ONLY})
    assert not wrong, f"importing rapport_shared loads {wrong}"


def test_the_runtime_core_code_names_no_tool_dependency():
    """Its own imports (third-party packages may load what happens to be installed: FastStream
    loads uvicorn, structlog rich)."""
    wrong = []
    for mod, path in module_files(SHARED / "rapport_shared", "rapport_shared").items():
        package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        wrong += [f"{path.relative_to(ROOT)}:{line} imports {target}" for target, line, _ in _imports(path, package)
                  if top(target) in TOOL_ONLY + TEST_ONLY]
    assert not wrong, "\n".join(wrong)


def test_the_tools_import_no_test_support_and_no_service_until_asked():
    loaded = modules_after_importing("rapport_tools")
    wrong = sorted({top(m) for m in loaded
                    if (top(m).startswith("rapport_") and top(m) not in (*CORE, "rapport_tools"))
                    or top(m) in TEST_ONLY})
    assert not wrong, f"importing rapport_tools loads {wrong}"


def requirement_closure(dist_name: str, extras: frozenset[str] = frozenset()) -> set[str]:
    """Normalized names of every installed distribution ``dist_name`` needs, itself included."""
    seen: set[str] = set()
    todo = [(dist_name, extras)]
    while todo:
        name, wanted = todo.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen:
            continue
        seen.add(key)
        try:
            requires = distribution(name).requires or []
        except PackageNotFoundError:
            continue
        for raw in requires:
            req = Requirement(raw)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in (wanted or {""})):
                todo.append((req.name, frozenset(req.extras)))
    return seen


def test_the_runtime_installs_without_test_or_tool_packages():
    closure = requirement_closure("rapport-shared")
    assert {"faststream", "asyncpg", "fastapi"} <= closure
    unwanted = {"pytest", "aiosmtpd", "testcontainers", "hypothesis", "rapport-tools", "rapport-testing"}
    assert not closure & unwanted, sorted(closure & unwanted)
    assert "aiosmtpd" in requirement_closure("rapport-testing")  # declared where it is used


def _imports(path: Path, package: str) -> list[tuple[str, int, bool]]:
    """(absolute module, line, under ``if TYPE_CHECKING``) for each import in ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    parts = package.split(".")
    out: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, typing_only: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for sub in child.body:
                    visit(ast.Module(body=[sub], type_ignores=[]), True)
                for sub in child.orelse:
                    visit(ast.Module(body=[sub], type_ignores=[]), typing_only)
                continue
            if isinstance(child, ast.Import):
                out.extend((a.name, child.lineno, typing_only) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    base = ".".join(parts[: len(parts) - child.level + 1] + ([base] if base else []))
                out.append((base, child.lineno, typing_only))
                out.extend((f"{base}.{a.name}", child.lineno, typing_only) for a in child.names)
            visit(child, typing_only)

    visit(tree, False)
    return out


def module_files(package_dir: Path, name: str) -> dict[str, Path]:
    files = {}
    for path in sorted(package_dir.rglob("*.py")):
        rel = path.relative_to(package_dir).with_suffix("")
        dotted = ".".join((name, *rel.parts))
        files[dotted.removesuffix(".__init__")] = path
    return files


def test_the_runtime_core_has_no_import_cycle():
    """Static graph of every import in rapport_shared, function-level ones included (a late import
    that closes a circle is still a circle); typing-only imports are not edges."""
    files = module_files(SHARED / "rapport_shared", "rapport_shared")
    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        for target, _, typing_only in _imports(path, package):
            if typing_only:
                continue
            while target and target not in files:  # `from pkg import name`: the module, else its package
                target = target.rpartition(".")[0]
            if target and target != mod:
                graph[mod].add(target)
    cycles = _cycles(graph)
    assert not cycles, "import cycles in rapport_shared:\n" + "\n".join(" -> ".join(c) for c in cycles)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(graph):
        if v not in index:
            strong(v)
    return found


@pytest.mark.parametrize("package_dir", SERVICE_PACKAGES, ids=lambda p: p.name)
def test_a_service_imports_no_other_service_and_no_test_support(package_dir):
    name = package_dir.name
    others = {p.name for p in SERVICE_PACKAGES} - {name}
    wrong = []
    for mod, path in module_files(package_dir, name).items():
        package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        for target, line, _ in _imports(path, package):
            where = f"{path.relative_to(ROOT)}:{line} imports {target}"
            if top(target) in others or top(target) == "rapport_testing" or top(target) in TEST_ONLY:
                wrong.append(where)
            # The tools are the service's command line (rapport-<svc>), nothing it runs on.
            elif top(target) == "rapport_tools" and mod != f"{name}.entrypoints.cli":
                wrong.append(where)
    assert not wrong, "\n".join(sorted(set(wrong)))


def test_the_contracts_package_imports_nothing_of_rapport_and_no_server_package():
    """rapport-contracts is what partners install: every module of it, imported in a fresh
    interpreter, loads no other Rapport package and no server, database or Kafka client."""
    loaded = modules_after_importing("rapport_contracts")
    assert "rapport_contracts.binding" in loaded and "rapport_contracts.webhooks" in loaded
    wrong = sorted({top(m) for m in loaded
                    if (top(m).startswith("rapport_") and top(m) != "rapport_contracts")
                    or top(m) in SERVER_ONLY + TOOL_ONLY + TEST_ONLY})
    assert not wrong, f"importing rapport_contracts loads {wrong}"
    # and its code names none of them (not even lazily, in a function)
    for mod, path in module_files(SHARED / "rapport_contracts", "rapport_contracts").items():
        package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        names = {top(target) for target, _, _ in _imports(path, package)}
        assert not {n for n in names if n.startswith("rapport_") and n != "rapport_contracts"}, path
        assert not names & set(SERVER_ONLY + TOOL_ONLY + TEST_ONLY), path


def test_the_contracts_package_installs_with_pydantic_and_standardwebhooks_only():
    closure = requirement_closure("rapport-contracts")
    assert {"pydantic", "standardwebhooks"} <= closure
    server = {"fastapi", "starlette", "uvicorn", "asyncpg", "aiokafka", "confluent-kafka", "faststream", "structlog",
              "rapport-shared", "rapport-tools", "rapport-testing"}
    assert not closure & server, sorted(closure & server)
    assert "rapport-contracts" in requirement_closure("rapport-shared")  # the services get it through the core
