#!/usr/bin/env python3
"""Check Kafka's jars against the checksums Maven Central publishes next to each of them.

Maven (even with ``-C``) checks a checksum only when it downloads a file, and takes the jars already
in ``~/.m2`` as they are; this script checks every jar the image gets, each time it is fetched,
against the repository itself (stdlib only: it runs with the host's ``python3``).

    verify_jars.py fetch  LAYOUT_DIR LIB_DIR LIST   # verify + copy into LIB_DIR + write LIST
    verify_jars.py check  LIB_DIR LIST              # offline: LIB_DIR is exactly what LIST says

``fetch``: LAYOUT_DIR is what ``maven-dependency-plugin:copy-dependencies
-Dmdep.useRepositoryLayout=true`` wrote (``org/apache/kafka/kafka_2.13/4.3.1/kafka_2.13-4.3.1.jar``),
so each jar's path is also its path on the repository. For each jar it downloads ``<url>.sha1``
(Maven Central has one for every artifact: missing = refused) and ``<url>.sha512`` (where the
publisher uploaded one; Apache's recent releases do), compares them with the file's own digests
and refuses (exit 1, nothing copied) on any mismatch. Then it copies the jars flat into LIB_DIR and
writes LIST, a TSV: group, artifact, version, file, sha1, sha512 (``-`` when not published),
sha256 (computed; for the SBOM), url. Env: RAPPORT_MAVEN_CENTRAL (default
https://repo.maven.apache.org/maven2, the repository Maven itself uses by default).

``check``: hashes LIB_DIR's jars again and refuses a jar that is missing, extra or changed since
``fetch`` verified it (deploy/build-images.sh runs it before every Kafka image build).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import os
import re
import shutil
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

CENTRAL = "https://repo.maven.apache.org/maven2"
HEADER = ("group", "artifact", "version", "file", "sha1", "sha512", "sha256", "url")
HEX_LEN = {"sha1": 40, "sha512": 128}

# fetch(url) -> the body as text, or None when the repository answers 404 (not published).
Fetch = Callable[[str], "str | None"]


class ChecksumError(Exception):
    """A jar does not match what the repository publishes (or nothing to check it against)."""


@dataclass(frozen=True)
class VerifiedJar:
    group: str
    artifact: str
    version: str
    file: str
    sha1: str
    sha512: str | None
    sha256: str
    url: str

    def row(self) -> str:
        return "\t".join(
            (self.group, self.artifact, self.version, self.file, self.sha1, self.sha512 or "-", self.sha256, self.url)
        )


def digests(path: Path) -> dict[str, str]:
    hs = {name: hashlib.new(name) for name in ("sha1", "sha256", "sha512")}
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            for h in hs.values():
                h.update(block)
    return {name: h.hexdigest() for name, h in hs.items()}


def coordinates(relpath: str) -> tuple[str, str, str]:
    """``org/apache/kafka/kafka_2.13/4.3.1/kafka_2.13-4.3.1.jar`` -> (group, artifact, version)."""
    parts = relpath.split("/")
    if len(parts) < 4 or not parts[-1].endswith(".jar"):
        raise ChecksumError(f"not a repository-layout jar path: {relpath}")
    group, artifact, version, name = ".".join(parts[:-3]), parts[-3], parts[-2], parts[-1]
    if not name.startswith(f"{artifact}-{version}"):
        raise ChecksumError(f"{relpath}: file name does not match {artifact} {version}")
    return group, artifact, version


def parse_checksum(text: str, alg: str, url: str) -> str:
    """A ``.sha1``/``.sha512`` file: the hex digest, optionally followed by a file name."""
    token = (text.strip().split() or [""])[0].lower()
    if not re.fullmatch(rf"[0-9a-f]{{{HEX_LEN[alg]}}}", token):
        raise ChecksumError(f"{url}: not a {alg} checksum: {text[:80]!r}")
    return token


def http_fetch(url: str) -> str | None:
    req = urllib.request.Request(url, headers={"User-Agent": "rapport-build verify_jars"})
    for attempt in range(3):
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 (https URL we build)
                return resp.read(4096).decode("ascii", "replace")
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            if attempt == 2:
                raise
        except OSError:
            if attempt == 2:
                raise
    return None


def verify_jar(path: Path, relpath: str, fetch: Fetch, central: str = CENTRAL) -> VerifiedJar:
    """Check one jar against ``<central>/<relpath>.sha1`` (required) and ``.sha512`` (if published)."""
    group, artifact, version = coordinates(relpath)
    url = f"{central.rstrip('/')}/{relpath}"
    got = digests(path)
    published: dict[str, str | None] = {}
    for alg in ("sha1", "sha512"):
        body = fetch(f"{url}.{alg}")
        published[alg] = None if body is None else parse_checksum(body, alg, f"{url}.{alg}")
    if published["sha1"] is None:
        raise ChecksumError(f"{url}.sha1: not found; refusing a jar that cannot be checked")
    for alg, want in published.items():
        if want is not None and want != got[alg]:
            raise ChecksumError(
                f"{relpath}: {alg} mismatch: the file has {got[alg]}, Maven Central publishes {want}"
            )
    return VerifiedJar(group, artifact, version, path.name, got["sha1"], published["sha512"], got["sha256"], url)


def verify_layout(layout: Path, fetch: Fetch, central: str = CENTRAL, workers: int = 8) -> list[VerifiedJar]:
    jars = sorted(p for p in layout.rglob("*.jar") if p.is_file())
    if not jars:
        raise ChecksumError(f"no jar under {layout}")
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(verify_jar, p, p.relative_to(layout).as_posix(), fetch, central) for p in jars]
        out = [f.result() for f in futures]
    names = [v.file for v in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ChecksumError(f"two artifacts share a file name: {', '.join(dupes)}")
    return sorted(out, key=lambda v: v.file)


def write_list(verified: list[VerifiedJar], path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("\t".join(HEADER) + "\n" + "".join(v.row() + "\n" for v in verified))
    os.replace(tmp, path)


def read_list(path: Path) -> list[VerifiedJar]:
    lines = path.read_text().splitlines()
    if not lines or tuple(lines[0].split("\t")) != HEADER:
        raise ChecksumError(f"{path}: not a verified-jar list")
    out = []
    for line in lines[1:]:
        f = line.split("\t")
        out.append(VerifiedJar(f[0], f[1], f[2], f[3], f[4], None if f[5] == "-" else f[5], f[6], f[7]))
    return out


def check_lib(lib: Path, listfile: Path) -> list[VerifiedJar]:
    """LIB_DIR holds exactly the listed jars, each with the listed digests."""
    listed = {v.file: v for v in read_list(listfile)}
    present = {p.name for p in lib.glob("*.jar")}
    problems = [f"missing: {n}" for n in sorted(listed.keys() - present)]
    problems += [f"not verified: {n}" for n in sorted(present - listed.keys())]
    for name in sorted(present & listed.keys()):
        got, want = digests(lib / name), listed[name]
        if got["sha1"] != want.sha1 or got["sha256"] != want.sha256 or (want.sha512 and got["sha512"] != want.sha512):
            problems.append(f"changed since verified: {name} (sha256 {got['sha256']}, verified {want.sha256})")
    if problems:
        raise ChecksumError(f"{lib}: " + "; ".join(problems))
    return list(listed.values())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch")
    f.add_argument("layout", type=Path)
    f.add_argument("lib", type=Path)
    f.add_argument("list", type=Path)
    c = sub.add_parser("check")
    c.add_argument("lib", type=Path)
    c.add_argument("list", type=Path)
    a = ap.parse_args(argv)
    try:
        if a.cmd == "fetch":
            central = os.environ.get("RAPPORT_MAVEN_CENTRAL", CENTRAL)
            verified = verify_layout(a.layout, http_fetch, central)
            a.lib.mkdir(parents=True, exist_ok=True)
            for v in verified:
                src = next(a.layout.rglob(v.file))
                shutil.copyfile(src, a.lib / v.file)
            write_list(verified, a.list)
            n512 = sum(1 for v in verified if v.sha512)
            print(
                f"verify_jars: {len(verified)} jars match Maven Central's published checksums "
                f"(sha1: {len(verified)}, sha512: {n512}; no sha512 published for {len(verified) - n512}) -> {a.list}",
                file=sys.stderr,
            )
        else:
            verified = check_lib(a.lib, a.list)
            print(f"verify_jars: {a.lib}: {len(verified)} jars as verified in {a.list}", file=sys.stderr)
    except (ChecksumError, OSError) as e:
        print(f"verify_jars: REFUSED: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
