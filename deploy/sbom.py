#!/usr/bin/env python3
"""A CycloneDX 1.5 JSON SBOM for one of Rapport's images, from what the image itself records.

deploy/build-images.sh runs this after each image is built (stdlib only: the host's ``python3``):

    sbom.py generate --image rapport/kafka:4.3.1 --image-id sha256:... --root DIR --out FILE.cdx.json
                     [--created RFC3339] [--property NAME=VALUE ...] [--dpkg-out FILE.tsv]
    sbom.py validate FILE.cdx.json ...     # needs cyclonedx-python-lib[json-validation] (dev group)

DIR is what the build copied out of the image (one ``docker run``, see build-images.sh ``image_sbom``):

    dpkg.tsv        dpkg-query -W -f '${Package}\\t${Version}\\t${Architecture}\\t${source:Package}\\t
                    ${source:Version}\\t${db:Status-Abbrev}\\n'      (every Debian package, exact version)
    debian_version  /etc/debian_version
    rapport/        /usr/share/rapport/ of the image, where the Dockerfiles leave
      apt-release.txt          the Origin/Suite/Version/Date of the apt lists the packages came from
      jars.verified.tsv        Kafka: deploy/kafka/verify_jars.py's list (sha1 and sha512 checked
                               against Maven Central, sha256)
      requirements.locked.txt  Python: the `uv export` of uv.lock the wheels were installed from
      wheels-runtime.sha256    sha256 of each third-party wheel installed (--require-hashes)
      wheels-<svc>.sha256      sha256 of the workspace wheels (rapport-contracts, rapport-shared, rapport-tools, rapport-<svc>)

Components: the OS (Debian), each Debian package (purl ``pkg:deb/debian/...``, source package as a
property), each jar (``pkg:maven/...``, SHA-1/SHA-256/SHA-512 hashes, its Maven Central URL), each
wheel (``pkg:pypi/...``, SHA-256; a third-party wheel whose hash is not among uv.lock's for that
pin is refused, not listed) and the workspace's own wheels (no purl: not published). No licences:
dpkg does not record them in a machine-readable form. Why a script and not a generator: no
maintained generator reachable here (PyPI, Debian) covers dpkg + Maven jars + wheels in one BOM
(``cyclonedx-py`` covers Python only); the output is validated against the official 1.5 schema by
tests/unit/deploy/test_supply_chain.py (cyclonedx-python-lib's strict JSON validator) and by
build-images.sh when the project's virtualenv has that library.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
import uuid
from pathlib import Path
from urllib.parse import quote

GENERATOR = {"type": "application", "name": "rapport deploy/sbom.py", "version": "1"}
SPEC = "1.5"


class SbomError(Exception):
    pass


def _q(s: str) -> str:
    return quote(s, safe="")


def norm(name: str) -> str:
    """PEP 503 name, as the pypi purl type wants it."""
    return re.sub(r"[-_.]+", "-", name).lower()


def prop(name: str, value: str) -> dict:
    return {"name": name, "value": value}


# ---- Debian -------------------------------------------------------------------------------------
def read_dpkg(path: Path) -> list[dict]:
    """Installed packages from the dpkg-query TSV (status ``ii``)."""
    out = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        f = line.split("\t")
        if len(f) < 6:
            raise SbomError(f"{path}: unexpected dpkg-query line: {line!r}")
        pkg, version, arch, src, src_version, status = f[:6]
        if status.strip() != "ii":
            continue
        out.append({"package": pkg, "version": version, "arch": arch, "source": src or pkg,
                    "source_version": src_version or version})
    if not out:
        raise SbomError(f"{path}: no installed Debian package")
    return sorted(out, key=lambda p: (p["package"], p["arch"]))


def deb_component(p: dict, distro: str) -> dict:
    purl = f"pkg:deb/debian/{_q(p['package'])}@{_q(p['version'])}?arch={_q(p['arch'])}&distro={_q(distro)}"
    props = [prop("rapport:dpkg:architecture", p["arch"])]
    if (p["source"], p["source_version"]) != (p["package"], p["version"]):
        props.append(prop("rapport:dpkg:source", f"{p['source']} {p['source_version']}"))
    return {"type": "library", "bom-ref": purl, "name": p["package"], "version": p["version"],
            "purl": purl, "properties": props}


# ---- jars ---------------------------------------------------------------------------------------
def read_jars(path: Path) -> list[dict]:
    lines = path.read_text().splitlines()
    header = lines[0].split("\t") if lines else []
    if header[:8] != ["group", "artifact", "version", "file", "sha1", "sha512", "sha256", "url"]:
        raise SbomError(f"{path}: not a verified-jar list (deploy/kafka/verify_jars.py)")
    return [dict(zip(header, line.split("\t"))) for line in lines[1:] if line.strip()]


def jar_component(j: dict) -> dict:
    purl = f"pkg:maven/{_q(j['group'])}/{_q(j['artifact'])}@{_q(j['version'])}?type=jar"
    hashes = [{"alg": "SHA-1", "content": j["sha1"]}, {"alg": "SHA-256", "content": j["sha256"]}]
    checked = "sha1"
    if j["sha512"] != "-":
        hashes.append({"alg": "SHA-512", "content": j["sha512"]})
        checked = "sha1,sha512"
    return {"type": "library", "bom-ref": purl, "group": j["group"], "name": j["artifact"],
            "version": j["version"], "purl": purl, "hashes": hashes,
            "externalReferences": [{"type": "distribution", "url": j["url"]}],
            "properties": [prop("rapport:file", f"/opt/kafka/lib/{j['file']}"),
                           prop("rapport:checksums-verified-against-maven-central", checked)]}


# ---- wheels -------------------------------------------------------------------------------------
def read_locked(path: Path) -> dict[str, tuple[str, set[str]]]:
    """``uv export`` requirements: normalised name -> (version, {sha256, ...})."""
    text = re.sub(r"\\\n", " ", path.read_text())
    out: dict[str, tuple[str, set[str]]] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line)
        if not m:
            continue
        out[norm(m.group(1))] = (m.group(2), set(re.findall(r"--hash=sha256:([0-9a-f]{64})", line)))
    return out


def read_sha256sum(path: Path) -> list[tuple[str, str]]:
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            out.append((name.lstrip("*").strip(), digest.lower()))
    return out


def wheel_name_version(filename: str) -> tuple[str, str]:
    parts = filename[: -len(".whl")].split("-") if filename.endswith(".whl") else []
    if len(parts) not in (5, 6):
        raise SbomError(f"not a wheel file name: {filename}")
    return parts[0], parts[1]


def wheel_component(filename: str, sha256: str, locked: dict | None) -> dict:
    name, version = wheel_name_version(filename)
    props = [prop("rapport:wheel", filename)]
    hashes = [{"alg": "SHA-256", "content": sha256}]
    if locked is None:  # the workspace's own wheels, built from this repository
        return {"type": "library", "bom-ref": f"workspace:{norm(name)}@{version}", "name": norm(name),
                "version": version, "hashes": hashes,
                "properties": props + [prop("rapport:source", "workspace (built from this repository)")]}
    pin = locked.get(norm(name))
    if pin is None or pin[0] != version:
        raise SbomError(f"{filename}: not pinned in uv.lock (lock has {pin[0] if pin else 'nothing'})")
    if sha256 not in pin[1]:
        raise SbomError(f"{filename}: sha256 {sha256} is not one of uv.lock's hashes for {norm(name)}=={version}")
    purl = f"pkg:pypi/{_q(norm(name))}@{_q(version)}"
    return {"type": "library", "bom-ref": purl, "name": norm(name), "version": version, "purl": purl,
            "hashes": hashes, "properties": props + [prop("rapport:source", "PyPI, sha256 as locked in uv.lock")]}


# ---- the BOM ------------------------------------------------------------------------------------
def generate(image: str, image_id: str, root: Path, created: str | None = None,
             properties: list[tuple[str, str]] = ()) -> tuple[dict, list[dict]]:
    """The BOM of the image whose records were copied to ``root``; also the Debian package list."""
    name, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "latest")
    rec = root / "rapport"
    debian_version = (root / "debian_version").read_text().strip() if (root / "debian_version").exists() else ""
    distro = f"debian-{debian_version}" if debian_version else "debian"
    debs = read_dpkg(root / "dpkg.tsv")
    image_ref = f"image:{image}"
    meta_props = [prop("rapport:image.id", image_id)] + [prop(k, v) for k, v in properties if v]
    if (rec / "apt-release.txt").exists():  # grep -H output: <list file>:<Field>: <value>
        releases: dict[str, list[str]] = {}
        for line in (rec / "apt-release.txt").read_text().splitlines():
            if ":" in line:
                file, field = line.split(":", 1)
                releases.setdefault(file.rsplit("/", 1)[-1], []).append(field.strip())
        meta_props += [prop("rapport:apt-release", f"{f} ({'; '.join(v)})") for f, v in sorted(releases.items())]
    components: list[dict] = []
    if debian_version:
        components.append({"type": "operating-system", "bom-ref": f"os:debian@{debian_version}",
                           "name": "debian", "version": debian_version})
    components += [deb_component(p, distro) for p in debs]
    if (rec / "jars.verified.tsv").exists():
        components += [jar_component(j) for j in read_jars(rec / "jars.verified.tsv")]
    runtime = rec / "wheels-runtime.sha256"
    if runtime.exists():
        locked_file = rec / "requirements.locked.txt"
        if not locked_file.exists():
            raise SbomError(f"{runtime} without {locked_file}: cannot check the wheels against uv.lock")
        locked = read_locked(locked_file)
        components += [wheel_component(f, h, locked) for f, h in read_sha256sum(runtime)]
    for ws in sorted(rec.glob("wheels-*.sha256")):
        if ws != runtime:
            components += [wheel_component(f, h, None) for f, h in read_sha256sum(ws)]
    refs = [c["bom-ref"] for c in components]
    dupes = sorted({r for r in refs if refs.count(r) > 1})
    if dupes:
        raise SbomError(f"duplicate components: {dupes[:5]}")
    bom = {
        "$schema": "http://cyclonedx.org/schema/bom-1.5.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": SPEC,
        "serialNumber": uuid.uuid5(uuid.NAMESPACE_URL, f"rapport-sbom:{image}:{image_id}").urn,
        "version": 1,
        "metadata": {
            "timestamp": created or dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "tools": {"components": [GENERATOR]},
            "component": {"type": "container", "bom-ref": image_ref, "name": name, "version": tag,
                          "properties": meta_props},
        },
        "components": components,
        "dependencies": [{"ref": image_ref, "dependsOn": refs}] + [{"ref": r} for r in refs],
    }
    return bom, debs


def rfc3339(ts: str) -> str:
    """Docker's ``Created`` (nanoseconds, Z) -> seconds precision, Z."""
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)", ts)
    return f"{m.group(1)}Z" if m else ts


def validate(paths: list[Path]) -> list[str]:
    """Errors per file against the official CycloneDX 1.5 JSON schema (strict: no extra fields)."""
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    validator = JsonStrictValidator(SchemaVersion.V1_5)
    errors = []
    for p in paths:
        err = validator.validate_str(p.read_text())
        if err is not None:
            errors.append(f"{p}: {err}")
    return errors


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate")
    g.add_argument("--image", required=True)
    g.add_argument("--image-id", required=True)
    g.add_argument("--root", type=Path, required=True)
    g.add_argument("--out", type=Path, required=True)
    g.add_argument("--dpkg-out", type=Path)
    g.add_argument("--created")
    g.add_argument("--property", action="append", default=[], metavar="NAME=VALUE")
    v = sub.add_parser("validate")
    v.add_argument("files", type=Path, nargs="+")
    a = ap.parse_args(argv)
    if a.cmd == "validate":
        try:
            errors = validate(a.files)
        except ImportError as e:
            print(f"sbom: cannot validate ({e}); `uv sync` installs cyclonedx-python-lib", file=sys.stderr)
            return 2
        for e in errors:
            print(f"sbom: INVALID {e}", file=sys.stderr)
        return 1 if errors else 0
    try:
        props = [tuple(p.split("=", 1)) for p in a.property]
        bom, debs = generate(a.image, a.image_id, a.root, rfc3339(a.created) if a.created else None, props)
    except (SbomError, OSError, ValueError) as e:
        print(f"sbom: REFUSED {a.image}: {e}", file=sys.stderr)
        return 1
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(bom, indent=1) + "\n")
    if a.dpkg_out:
        a.dpkg_out.write_text("package\tversion\tarchitecture\tsource\tsource_version\n" + "".join(
            f"{p['package']}\t{p['version']}\t{p['arch']}\t{p['source']}\t{p['source_version']}\n" for p in debs))
    kinds: dict[str, int] = {}
    for c in bom["components"]:
        k = c["purl"].split("/")[0][4:] if "purl" in c else c["bom-ref"].split(":")[0]
        kinds[k] = kinds.get(k, 0) + 1
    print(f"sbom: {a.image}: {', '.join(f'{n} {k}' for k, n in kinds.items())} -> {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
