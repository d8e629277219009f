"""The console as a process beside the four services (the shared ``system`` fixture), and Debian's
Chromium driven by Playwright.

Chromium is the distribution's (``/usr/bin/chromium``, installed by deploy/test.sh): Playwright's
own browser download is never used (``executable_path``). axe-core is vendored (vendor/README.md)
and injected into every page a test checks."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
from pathlib import Path

import pytest

from rapport_shared import db
from rapport_testing.services import ServiceProcess, role_dsn

HERE = Path(__file__).resolve().parent
ARTIFACTS = HERE / "artifacts"  # screenshots of each run (git-ignored)
DOCS_IMG = HERE.parents[2] / "docs" / "img"  # the README's copies
AXE = HERE / "vendor" / "axe.min.js"
CHROMIUM = os.environ.get("RAPPORT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def console(system, postgres, kafka, tmp_path_factory):
    """The console service as its own process (own role and schema, provisioned like the others),
    calling the system's outcomes and notifier for the clinicians' actions."""
    password = secrets.token_urlsafe(12)
    asyncio.run(db.provision(postgres.admin_dsn, "rapport", "console", password))
    env = {
        "RAPPORT_SERVICE_NAME": "console",
        "RAPPORT_ENVIRONMENT": "test",
        "RAPPORT_DATABASE_DSN": role_dsn(postgres.admin_dsn, "console", password),
        "RAPPORT_KAFKA_BOOTSTRAP": kafka.bootstrap,
        "RAPPORT_AUTH_JWKS": system["intake"].env["RAPPORT_AUTH_JWKS"],
        "RAPPORT_LOG_FORMAT": "json",
        "RAPPORT_MIGRATE_ON_START": "true",
        "RAPPORT_OUTCOMES_URL": system["outcomes"].url,
        "RAPPORT_NOTIFIER_URL": system["notifier"].url,
        # plain http on loopback in the test: the cookie cannot be Secure here (production refuses this)
        "RAPPORT_COOKIE_SECURE": "false",
        "RAPPORT_SESSION_SECRET": secrets.token_hex(16),
        "RAPPORT_SSE_STREAM_S": "10",
    }
    proc = ServiceProcess("console", env, Path(tmp_path_factory.mktemp("console-logs")))
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: deploy/test.sh installs Debian's chromium (apt-get install chromium)")
    return CHROMIUM


@pytest.fixture
async def browser(chromium_path):
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            await b.close()


@pytest.fixture(scope="session")
def axe_source() -> str:
    return AXE.read_text()


def save_screenshot(png: bytes, name: str) -> Path:
    """The test artefact, and the copy the README shows."""
    ARTIFACTS.mkdir(exist_ok=True)
    out = ARTIFACTS / f"console-{name}.png"
    out.write_bytes(png)
    DOCS_IMG.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(out, DOCS_IMG / f"console-{name}.png")
    return out


@pytest.fixture(scope="session")
def screenshot():
    """``screenshot(png, name)``: saves the test artefact and the README's copy."""
    return save_screenshot
