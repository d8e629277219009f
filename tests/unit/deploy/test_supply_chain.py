"""The images' supply chain (issue 17, item 6).

* Kafka's jars are checked against the checksums Maven Central publishes (``.sha1`` always,
  ``.sha512`` where published): deploy/kafka/verify_jars.py refuses a tampered jar, a jar with no
  checksum to check, and (offline) a jar changed after it was verified.
* The Python images install uv.lock's wheels with the lock's hashes, and nothing else; uv is pinned
  wherever the deploy scripts install it.
* deploy/sbom.py writes a CycloneDX 1.5 SBOM (valid against the official schema, strict) listing
  the Debian packages with exact versions, the jars with their hashes and the wheels with theirs,
  and refuses a wheel whose hash is not in uv.lock. The SBOMs the build wrote, when there are any
  (deploy/test.sh builds the infrastructure images before the tests), are checked the same way.
"""

from __future__ import annotations

import hashlib
import http.server
import importlib.util
import json
import re
import sys
import threading
from pathlib import Path

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from rapport_tools import services as registry

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
SERVICES = registry.names()  # every installed service has an image


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses need the module registered
    spec.loader.exec_module(module)
    return module


verify_jars = _load("rapport_deploy_verify_jars", DEPLOY / "kafka" / "verify_jars.py")
sbom = _load("rapport_deploy_sbom", DEPLOY / "sbom.py")

JAR_REL = "org/example/widget/1.2.3/widget-1.2.3.jar"
JAR_BYTES = b"PK\x03\x04 a jar, as published on Maven Central"


def _sha(alg: str, data: bytes) -> str:
    return hashlib.new(alg, data).hexdigest()


def _layout(tmp_path: Path, data: bytes = JAR_BYTES) -> Path:
    layout = tmp_path / "m2"
    (layout / JAR_REL).parent.mkdir(parents=True)
    (layout / JAR_REL).write_bytes(data)
    return layout


def _central(published: bytes = JAR_BYTES, sha512: bool = True):
    """A fake repository publishing the checksums of ``published`` (the genuine jar)."""
    files = {f"{verify_jars.CENTRAL}/{JAR_REL}.sha1": f"{_sha('sha1', published)}  widget-1.2.3.jar\n"}
    if sha512:
        files[f"{verify_jars.CENTRAL}/{JAR_REL}.sha512"] = _sha("sha512", published)
    return files.get


# ---- jars against Maven Central's checksums -------------------------------------------------------
def test_a_genuine_jar_is_verified_with_its_coordinates_and_digests(tmp_path):
    layout = _layout(tmp_path)
    [v] = verify_jars.verify_layout(layout, _central())
    assert (v.group, v.artifact, v.version, v.file) == ("org.example", "widget", "1.2.3", "widget-1.2.3.jar")
    assert v.sha1 == _sha("sha1", JAR_BYTES) and v.sha512 == _sha("sha512", JAR_BYTES)
    assert v.sha256 == _sha("sha256", JAR_BYTES)
    assert v.url == f"{verify_jars.CENTRAL}/{JAR_REL}"


def test_a_jar_without_a_published_sha512_is_checked_by_its_sha1(tmp_path):
    [v] = verify_jars.verify_layout(_layout(tmp_path), _central(sha512=False))
    assert v.sha512 is None and v.sha1 == _sha("sha1", JAR_BYTES)


@pytest.mark.parametrize("sha512", [True, False])
def test_a_tampered_jar_is_refused(tmp_path, sha512):
    layout = _layout(tmp_path, JAR_BYTES + b"\x00 injected class")
    with pytest.raises(verify_jars.ChecksumError, match="mismatch"):
        verify_jars.verify_layout(layout, _central(sha512=sha512))


def test_a_sha512_mismatch_is_refused_even_when_the_sha1_matches(tmp_path):
    files = {
        f"{verify_jars.CENTRAL}/{JAR_REL}.sha1": _sha("sha1", JAR_BYTES),
        f"{verify_jars.CENTRAL}/{JAR_REL}.sha512": _sha("sha512", b"something else"),
    }
    with pytest.raises(verify_jars.ChecksumError, match="sha512 mismatch"):
        verify_jars.verify_layout(_layout(tmp_path), files.get)


def test_a_jar_with_no_published_sha1_is_refused(tmp_path):
    with pytest.raises(verify_jars.ChecksumError, match=r"\.sha1: not found"):
        verify_jars.verify_layout(_layout(tmp_path), lambda url: None)


def test_a_checksum_file_that_is_not_a_checksum_is_refused(tmp_path):
    with pytest.raises(verify_jars.ChecksumError, match="not a sha1 checksum"):
        verify_jars.verify_layout(_layout(tmp_path), lambda url: "<html>Not Found</html>")


class _Repo(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}

    def do_GET(self):  # noqa: N802
        body = self.files.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.end_headers()
        if body is not None:
            self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def repo():
    """A local stand-in for Maven Central (loopback); ``repo.files`` maps paths to bodies."""
    _Repo.files = {}
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Repo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    server.files = _Repo.files
    server.url = f"http://127.0.0.1:{server.server_address[1]}/maven2"
    yield server
    server.shutdown()
    server.server_close()


def test_the_fetch_command_over_http_copies_and_lists_verified_jars(tmp_path, repo, monkeypatch):
    repo.files[f"/maven2/{JAR_REL}.sha1"] = _sha("sha1", JAR_BYTES).encode()  # no .sha512: 404
    monkeypatch.setenv("RAPPORT_MAVEN_CENTRAL", repo.url)
    layout, lib, listing = _layout(tmp_path), tmp_path / "lib", tmp_path / "jars.verified.tsv"
    assert verify_jars.main(["fetch", str(layout), str(lib), str(listing)]) == 0
    assert (lib / "widget-1.2.3.jar").read_bytes() == JAR_BYTES
    [v] = verify_jars.read_list(listing)
    assert v.sha1 == _sha("sha1", JAR_BYTES) and v.sha512 is None and v.url == f"{repo.url}/{JAR_REL}"
    assert verify_jars.main(["check", str(lib), str(listing)]) == 0


def test_the_fetch_command_refuses_a_tampered_jar_and_keeps_nothing(tmp_path, repo, monkeypatch, capsys):
    repo.files[f"/maven2/{JAR_REL}.sha1"] = _sha("sha1", JAR_BYTES).encode()
    repo.files[f"/maven2/{JAR_REL}.sha512"] = _sha("sha512", JAR_BYTES).encode()
    monkeypatch.setenv("RAPPORT_MAVEN_CENTRAL", repo.url)
    layout, lib, listing = _layout(tmp_path, b"tampered"), tmp_path / "lib", tmp_path / "jars.verified.tsv"
    assert verify_jars.main(["fetch", str(layout), str(lib), str(listing)]) == 1
    assert "REFUSED" in capsys.readouterr().err
    assert not listing.exists() and not (lib / "widget-1.2.3.jar").exists()


def test_check_refuses_a_jar_changed_added_or_removed_after_verification(tmp_path):
    lib, listing = tmp_path / "lib", tmp_path / "jars.verified.tsv"
    lib.mkdir()
    (lib / "widget-1.2.3.jar").write_bytes(JAR_BYTES)
    verify_jars.write_list(verify_jars.verify_layout(_layout(tmp_path), _central()), listing)
    assert [v.file for v in verify_jars.check_lib(lib, listing)] == ["widget-1.2.3.jar"]

    (lib / "widget-1.2.3.jar").write_bytes(JAR_BYTES + b"!")
    with pytest.raises(verify_jars.ChecksumError, match="changed since verified"):
        verify_jars.check_lib(lib, listing)
    (lib / "widget-1.2.3.jar").write_bytes(JAR_BYTES)
    (lib / "extra-1.0.jar").write_bytes(b"x")
    with pytest.raises(verify_jars.ChecksumError, match="not verified: extra-1.0.jar"):
        verify_jars.check_lib(lib, listing)
    (lib / "extra-1.0.jar").unlink()
    (lib / "widget-1.2.3.jar").unlink()
    with pytest.raises(verify_jars.ChecksumError, match="missing: widget-1.2.3.jar"):
        verify_jars.check_lib(lib, listing)


def test_the_build_verifies_the_jars_it_fetches_and_the_image_keeps_the_list():
    common = (DEPLOY / "_common.sh").read_text()
    body = common[common.index("fetch_kafka_jars() {"):]
    assert "-Dmdep.useRepositoryLayout=true" in body and re.search(r"mvn -B -q -C\b", body)
    assert re.search(r'verify_jars\.py"? fetch ', body.replace('"$verifier"', "verify_jars.py"))
    assert re.search(r'verify_jars\.py"? check ', body.replace('"$verifier"', "verify_jars.py"))
    dockerfile = (DEPLOY / "kafka" / "Dockerfile").read_text()
    assert "COPY jars.verified.tsv /usr/share/rapport/jars.verified.tsv" in dockerfile


# ---- locked wheels with hashes, pinned uv -------------------------------------------------------
def _instructions(dockerfile: Path) -> list[str]:
    """Dockerfile instructions with continuation lines joined and comments dropped."""
    lines = [ln for ln in dockerfile.read_text().splitlines() if not ln.lstrip().startswith("#")]
    return [re.sub(r"\s+", " ", i).strip() for i in "\n".join(lines).replace("\\\n", " ").splitlines() if i.strip()]


def _pip_installs(dockerfile: Path) -> list[str]:
    return [
        seg.strip()
        for i in _instructions(dockerfile)
        if i.startswith("RUN ")
        for seg in re.split(r"&&|;", i[4:])
        if re.search(r"\bpip3? install\b", seg)
    ]


def test_the_runtime_installs_the_locked_wheels_with_their_hashes_only():
    [install] = _pip_installs(DEPLOY / "python-runtime.Dockerfile")
    for flag in ("--require-hashes", "--no-deps", "--no-index", "-r /tmp/wheels/requirements.txt"):
        assert flag in install, (flag, install)


@pytest.mark.parametrize("svc", SERVICES)
def test_each_service_installs_its_four_wheels_by_hash(svc):
    [install] = _pip_installs(ROOT / "services" / svc / "Dockerfile")
    for flag in ("--require-hashes", "--no-deps", "--no-index", f"-r {svc}.requirements.txt"):
        assert flag in install, (flag, install)
    dockerfile = (ROOT / "services" / svc / "Dockerfile").read_text()
    assert f"COPY app/{svc}.requirements.txt" in dockerfile
    # the contracts, the runtime core, the tools (rapport-<svc> is their command line) and the service; never test support
    assert all(f"app/{w}-*.whl" in dockerfile for w in ("rapport_contracts", "rapport_shared", "rapport_tools", f"rapport_{svc}"))
    assert "rapport_testing" not in dockerfile


def test_every_pip_install_in_an_image_checks_hashes():
    dockerfiles = [DEPLOY / "python-runtime.Dockerfile", *(ROOT / "services").glob("*/Dockerfile")]
    dockerfiles += list(DEPLOY.glob("*/Dockerfile"))
    for df in dockerfiles:
        for install in _pip_installs(df):
            assert "--require-hashes" in install, (df, install)


def test_the_wheelhouse_comes_from_the_lock_with_its_hashes():
    script = (DEPLOY / "build-images.sh").read_text()
    text = re.sub(r"\\\n\s*", " ", script)
    exports = [ln for ln in text.splitlines() if re.search(r"\buv export --", ln) and not ln.lstrip().startswith("#")]
    assert exports, "build-images.sh must export the lock"
    for ln in exports:
        assert "--frozen" in ln and "--no-hashes" not in ln and "--no-dev" in ln, ln
    commands = [ln for ln in text.splitlines() if not re.match(r"\s*(#|log |echo |die )", ln)]
    downloads = [ln for ln in commands if re.search(r"\bpip\S*\s+download\b", ln)]
    assert downloads, "build-images.sh must download the locked wheels"
    for ln in downloads:
        assert "--require-hashes" in ln and "--only-binary=:all:" in ln and "--no-deps" in ln, ln
    # No third-party wheel built again from PyPI: `pip wheel` only for the workspace's own sources.
    for ln in commands:
        if re.search(r"\bpip\S*\s+wheel\b", ln):
            assert "--no-deps" in ln and "-r " not in ln, ln
    assert "file:///tmp/wheels/%s --hash=sha256:%s" in script  # <svc>.requirements.txt


def test_uv_is_pinned_wherever_the_deploy_scripts_install_it():
    common = (DEPLOY / "_common.sh").read_text()
    m = re.search(r"^UV_VERSION=(\S+)$", common, re.M)
    assert m and re.fullmatch(r"\d+\.\d+\.\d+", m.group(1)), "UV_VERSION=X.Y.Z in deploy/_common.sh"
    scripts = [*DEPLOY.glob("*.sh"), ROOT / ".ci" / "run"]
    for script in scripts:
        for n, line in enumerate(script.read_text().splitlines(), 1):
            if line.lstrip().startswith("#"):
                continue
            for args in re.findall(r"pip3? install\b(.*)", line):
                for token in (t.strip("\"'") for t in args.split()):
                    if re.match(r"uv(\b|$)(?!-)", token) and not token.startswith("uvicorn"):
                        assert token == "uv==$UV_VERSION", f"{script.name}:{n}: unpinned uv: {line}"
    for script in ("test.sh", "demo.sh", "build-images.sh"):
        text = (DEPLOY / script).read_text()
        if re.search(r"^\s*[^#\n]*\buv (sync|run|export|build)\b", text, re.M):
            assert "ensure_uv" in text, f"deploy/{script} uses uv without ensure_uv (the pinned version)"


# ---- the SBOM -----------------------------------------------------------------------------------
WHEEL = "demo_pkg-1.0.0-py3-none-any.whl"
WHEEL_SHA = _sha("sha256", b"a wheel")
OTHER_SHA = _sha("sha256", b"the same release's other wheel")


def _records(tmp_path: Path, wheel_sha: str = WHEEL_SHA) -> Path:
    """What build-images.sh copies out of a built image (dpkg-query output and /usr/share/rapport)."""
    root = tmp_path / "image"
    rec = root / "rapport"
    rec.mkdir(parents=True)
    (root / "debian_version").write_text("12.15\n")
    (root / "dpkg.tsv").write_text(
        "libc6\t2.36-9+deb12u14\tamd64\tglibc\t2.36-9+deb12u14\tii \n"
        "openjdk-17-jre-headless\t17.0.21.1+2-1~deb12u1\tamd64\topenjdk-17\t17.0.21.1+2-1~deb12u1\tii \n"
        "perl-base\t5.36.0-7+deb12u3\tamd64\tperl\t5.36.0-7+deb12u3\tii \n"
        "python3\t3.11.2-1+b1\tamd64\tpython3-defaults\t3.11.2-1\tii \n"
        "removed-pkg\t1.0\tamd64\tremoved-pkg\t1.0\trc \n"
        "tzdata\t2025b-0+deb12u2\tall\ttzdata\t2025b-0+deb12u2\tii \n"
        "libgcrypt20\t1:1.10.1-3\tamd64\tlibgcrypt20\t1:1.10.1-3\tii \n"
    )
    (rec / "apt-release.txt").write_text(
        "/var/lib/apt/lists/mirror_debian_dists_bookworm_InRelease:Suite: oldstable\n"
        "/var/lib/apt/lists/mirror_debian_dists_bookworm_InRelease:Date: Sat, 15 Nov 2026 10:00:00 UTC\n"
    )
    jars = verify_jars.verify_layout(_layout(tmp_path), _central())
    verify_jars.write_list(jars, rec / "jars.verified.tsv")
    (rec / "requirements.locked.txt").write_text(
        f"demo-pkg==1.0.0 \\\n    --hash=sha256:{OTHER_SHA} \\\n    --hash=sha256:{WHEEL_SHA}\n    # via rapport-shared\n"
        "colorama==0.4.6 ; sys_platform == 'win32' \\\n    --hash=sha256:" + "0" * 64 + "\n"
    )
    (rec / "wheels-runtime.sha256").write_text(f"{wheel_sha}  {WHEEL}\n")
    (rec / "wheels-intake.sha256").write_text(
        f"{_sha('sha256', b'shared')}  rapport_shared-0.1.0-py3-none-any.whl\n"
        f"{_sha('sha256', b'intake')}  rapport_intake-0.1.0-py3-none-any.whl\n"
    )
    return root


def _by_kind(bom: dict) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for c in bom["components"]:
        kind = c["purl"].split("/")[0][4:] if "purl" in c else c["bom-ref"].split(":")[0]
        out.setdefault(kind, []).append(c)
    return out


def _assert_valid_cyclonedx_15(text: str) -> None:
    assert JsonStrictValidator(SchemaVersion.V1_5).validate_str(text) is None


def test_the_validator_is_not_a_no_op():
    bad = json.dumps({"bomFormat": "CycloneDX", "specVersion": "1.5", "components": [{"name": "x"}]})
    assert JsonStrictValidator(SchemaVersion.V1_5).validate_str(bad) is not None


def test_the_sbom_is_valid_cyclonedx_and_lists_debs_jars_and_wheels(tmp_path):
    out, dpkg_out = tmp_path / "intake.cdx.json", tmp_path / "intake.dpkg.tsv"
    rc = sbom.main([
        "generate", "--image", "rapport/intake:0.1.0", "--image-id", "sha256:" + "ab" * 32,
        "--root", str(_records(tmp_path)), "--out", str(out), "--dpkg-out", str(dpkg_out),
        "--created", "2026-12-03T06:57:09.123456789Z", "--property", "rapport:inputs.sha256=" + "cd" * 32,
    ])
    assert rc == 0
    _assert_valid_cyclonedx_15(out.read_text())
    bom = json.loads(out.read_text())
    assert bom["specVersion"] == "1.5" and bom["metadata"]["timestamp"] == "2026-12-03T06:57:09Z"
    image = bom["metadata"]["component"]
    assert (image["type"], image["name"], image["version"]) == ("container", "rapport/intake", "0.1.0")
    props = {(p["name"], p["value"]) for p in image["properties"]}
    assert ("rapport:image.id", "sha256:" + "ab" * 32) in props
    assert any(n == "rapport:apt-release" and "Date: Sat, 15 Nov 2026" in v for n, v in props)

    kinds = _by_kind(bom)
    debs = {c["name"]: c for c in kinds["deb"]}
    assert set(debs) == {"libc6", "openjdk-17-jre-headless", "perl-base", "python3", "tzdata", "libgcrypt20"}
    assert debs["libc6"]["version"] == "2.36-9+deb12u14"
    assert debs["libc6"]["purl"] == "pkg:deb/debian/libc6@2.36-9%2Bdeb12u14?arch=amd64&distro=debian-12.15"
    assert debs["libgcrypt20"]["version"] == "1:1.10.1-3"
    assert {"name": "rapport:dpkg:source", "value": "python3-defaults 3.11.2-1"} in debs["python3"]["properties"]
    assert [c["name"] for c in kinds["os"]] == ["debian"] and kinds["os"][0]["version"] == "12.15"

    [jar] = kinds["maven"]
    assert jar["purl"] == "pkg:maven/org.example/widget@1.2.3?type=jar"
    assert {h["alg"]: h["content"] for h in jar["hashes"]} == {
        "SHA-1": _sha("sha1", JAR_BYTES), "SHA-256": _sha("sha256", JAR_BYTES), "SHA-512": _sha("sha512", JAR_BYTES),
    }
    assert jar["externalReferences"] == [{"type": "distribution", "url": f"{verify_jars.CENTRAL}/{JAR_REL}"}]

    [wheel] = kinds["pypi"]
    assert (wheel["name"], wheel["version"], wheel["purl"]) == ("demo-pkg", "1.0.0", "pkg:pypi/demo-pkg@1.0.0")
    assert wheel["hashes"] == [{"alg": "SHA-256", "content": WHEEL_SHA}]
    assert sorted(c["name"] for c in kinds["workspace"]) == ["rapport-intake", "rapport-shared"]
    assert all(c["hashes"][0]["alg"] == "SHA-256" for c in kinds["workspace"])

    refs = [c["bom-ref"] for c in bom["components"]]
    assert len(refs) == len(set(refs))
    assert bom["dependencies"][0] == {"ref": image["bom-ref"], "dependsOn": refs}
    assert dpkg_out.read_text().splitlines()[:2] == [
        "package\tversion\tarchitecture\tsource\tsource_version", "libc6\t2.36-9+deb12u14\tamd64\tglibc\t2.36-9+deb12u14",
    ]


def test_the_sbom_refuses_a_wheel_whose_hash_is_not_in_the_lock(tmp_path, capsys):
    out = tmp_path / "x.cdx.json"
    root = _records(tmp_path, wheel_sha=_sha("sha256", b"a rebuilt wheel"))
    rc = sbom.main(["generate", "--image", "rapport/intake:0.1.0", "--image-id", "sha256:00", "--root", str(root), "--out", str(out)])
    assert rc == 1 and not out.exists()
    assert "not one of uv.lock's hashes" in capsys.readouterr().err


def test_the_sbom_cli_validate_command(tmp_path):
    out = tmp_path / "x.cdx.json"
    root = _records(tmp_path)
    assert sbom.main(["generate", "--image", "rapport/kafka:4.3.1", "--image-id", "sha256:00", "--root", str(root), "--out", str(out)]) == 0
    assert sbom.main(["validate", str(out)]) == 0
    broken = json.loads(out.read_text())
    broken["components"][0]["hashes"] = [{"alg": "SHA-1", "content": "not hex"}]
    out.write_text(json.dumps(broken))
    assert sbom.main(["validate", str(out)]) == 1


BUILT = sorted((DEPLOY / ".build" / "sbom").glob("*.cdx.json"))


@pytest.mark.skipif(not BUILT, reason="no SBOM built here (deploy/build-images.sh writes deploy/.build/sbom/)")
@pytest.mark.parametrize("path", BUILT, ids=[p.name for p in BUILT])
def test_the_sboms_the_build_wrote(path):
    _assert_valid_cyclonedx_15(path.read_text())
    bom = json.loads(path.read_text())
    kinds = _by_kind(bom)
    debs = {c["name"]: c["version"] for c in kinds["deb"]}
    assert {"libc6", "dpkg", "base-files"} <= debs.keys() and all(debs.values())
    name = path.name.removesuffix(".cdx.json")
    if name == "kafka":
        jars = kinds["maven"]
        assert any(c["name"] == "kafka_2.13" for c in jars)
        assert all({"SHA-1", "SHA-256"} <= {h["alg"] for h in c["hashes"]} for c in jars)
        assert "openjdk-17-jre-headless" in debs
    if name == "postgres":
        assert "postgresql-15" in debs
    if name == "python-runtime" or name in SERVICES:
        wheels = {c["name"] for c in kinds["pypi"]}
        assert {"aiokafka", "asyncpg", "pydantic"} <= wheels
        assert all(c["hashes"][0]["alg"] == "SHA-256" for c in kinds["pypi"])
    if name in SERVICES:
        assert {c["name"] for c in kinds["workspace"]} == {"rapport-contracts", "rapport-shared", "rapport-tools", f"rapport-{name}"}
