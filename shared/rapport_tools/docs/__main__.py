"""``python -m rapport_tools.docs [asyncapi|html|all] [--check] [--root DIR]``

Writes ``<root>/docs/asyncapi.json`` (asyncapi) and the human-readable catalogue (html:
``<root>/docs/events/index.html``, ``schemas/events/<type>.json`` and ``schemas/internal/<type>.json``
beside it, and the generated tables of ``<root>/docs/events.md``); ``all`` (default) does both. ``--check`` writes nothing and
exits 1 listing every stale, missing or extra file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..contracts.export import repo_root
from . import catalogue
from .asyncapi import build
from .html import render_site


def expected_files(root: Path, what: str = "all") -> dict[Path, str]:
    doc = build()
    files: dict[Path, str] = {}
    if what in ("asyncapi", "all"):
        files[root / "docs" / "asyncapi.json"] = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    if what in ("html", "all"):
        for rel, text in render_site(doc).items():
            files[root / "docs" / "events" / rel] = text
        events_md = root / "docs" / "events.md"
        if events_md.exists():  # the prose is hand-written; only its catalogue tables are generated
            files[events_md] = catalogue.update(events_md.read_text(), doc)
    return files


def stale_files(root: Path, what: str = "all") -> list[str]:
    files = expected_files(root, what)
    stale = [str(p.relative_to(root)) for p, text in files.items() if not p.exists() or p.read_text() != text]
    if what in ("html", "all"):
        generated = root / "docs" / "events" / "schemas"
        for extra in sorted(generated.glob("*/*.json")) if generated.is_dir() else []:
            if extra not in files:
                stale.append(f"{extra.relative_to(root)} (no longer generated)")
    return stale


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rapport_tools.docs", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", nargs="?", choices=("asyncapi", "html", "all"), default="all")
    p.add_argument("--check", action="store_true", help="fail if a committed file is stale")
    p.add_argument("--root", type=Path, default=None, help="repository root (default: this checkout)")
    args = p.parse_args(argv)
    root = args.root or repo_root()
    if args.check:
        stale = stale_files(root, args.what)
        if stale:
            print("stale generated docs (run: uv run python -m rapport_tools.docs):", *stale, sep="\n  ", file=sys.stderr)
            return 1
        print(f"docs are current ({args.what})")
        return 0
    files = expected_files(root, args.what)
    written = []
    for path, text in files.items():
        if not path.exists() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            written.append(str(path.relative_to(root)))
    if args.what in ("html", "all"):
        generated = root / "docs" / "events" / "schemas"
        for extra in sorted(generated.glob("*/*.json")):
            if extra not in files:
                extra.unlink()
                written.append(f"-{extra.relative_to(root)}")
    print(f"{len(files)} file(s) generated, {len(written)} changed" + (":\n  " + "\n  ".join(written) if written else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
