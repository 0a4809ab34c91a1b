"""The web console in a real browser: a `kiln up --demo` subprocess and headless Chromium.

Chromium is Debian's ``chromium`` package (``.ci/apt-packages``; ``.ci/run``
installs it), driven by Playwright for Python through the system executable:
Playwright's own browser downloads are never used. A missing browser FAILS
the browser tests with a message that says how to install it; they are never
skipped.

Every page records console errors and uncaught exceptions; a test fails if
there is any. Screenshots go to ``test-artifacts/console/`` (gitignored).
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from server import crypto
from tests.conftest import ROOT, free_port
from tests.kiln_process import KilnProcess, kiln_env, run_kiln

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = ROOT / "test-artifacts" / "console"
VIEWER_EMAIL = "viewer@example.com"
VIEWER_PASSWORD = "viewer-password-123"


def chromium_executable() -> str:
    candidates = (os.environ.get("KILN_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"))
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail(
        "Chromium is not installed: the web console tests need Debian's `chromium` package "
        "(apt-get install chromium; .ci/run installs the packages listed in .ci/apt-packages), "
        "or KILN_CHROMIUM=/path/to/chromium",
        pytrace=False,
    )


@dataclass
class Kiln:
    url: str
    demo: dict[str, Any]
    env: dict[str, str]
    data_dir: Path

    def graphql(
        self,
        query: str,
        variables: dict | None = None,
        *,
        token: str | None = None,
        cookie: str | None = None,
    ) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if cookie:
            headers["Cookie"] = cookie
        req = urllib.request.Request(
            f"{self.url}/graphql",
            data=json.dumps({"query": query, "variables": variables or {}}).encode(),
            headers=headers,
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())


@pytest.fixture(scope="package")
def kiln(make_database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kiln]:
    """`kiln up --demo` on a fresh database and data dir, plus a viewer in the demo account."""
    data = tmp_path_factory.mktemp("console") / "data"
    env = kiln_env(
        KILN_DATABASE_URL=make_database(),
        KILN_DATA_DIR=str(data),
        KILN_SECRET_KEY=crypto.generate_key(),
        KILN_HEARTBEAT_INTERVAL="1",
    )
    proc = KilnProcess(["up", "--demo", "--port", str(free_port())], env=env)
    try:
        proc.wait_ready(120)
        demo = json.loads((data / "demo.json").read_text())
        made = run_kiln(
            [
                "admin",
                "create-user",
                VIEWER_EMAIL,
                "--account",
                "demo",
                "--role",
                "viewer",
                "--name",
                "Vera Viewer",
                "--password-stdin",
            ],
            env=env,
            input=VIEWER_PASSWORD + "\n",
        )
        assert made.returncode == 0, made.stderr
        assert proc.url is not None
        k = Kiln(proc.url, demo, env, data)
        yield k
        stop_ide_session(k)
    finally:
        proc.stop()


def stop_ide_session(k: Kiln) -> None:
    """A develop server outlives `kiln up` by design (re-attached on restart): a test that
    failed before stopping its IDE session must not leave one behind."""
    token, project = k.demo["token"], k.demo["project_id"]
    found = k.graphql(
        "query($p: ID) { ideSession(projectId: $p) { id state } }", {"p": project}, token=token
    )["data"]["ideSession"]
    if found and found["state"] in ("pending", "ready"):
        k.graphql(
            "mutation($id: ID!) { stopIdeSession(id: $id) { errors { code } } }",
            {"id": found["id"]},
            token=token,
        )


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    """Package-scoped on purpose: while sync Playwright is open its event loop counts as
    running in this thread, so it must be closed before the async tests of other packages."""
    executable = chromium_executable()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Playwright for Python is missing: pip install -e '.[test]'", pytrace=False)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@dataclass
class Problems:
    """Console errors and uncaught exceptions seen by a page."""

    items: list[str] = field(default_factory=list)

    def watch(self, page: Any) -> None:
        def on_console(msg: Any) -> None:
            if msg.type == "error":
                loc = msg.location or {}
                where = f"{loc.get('url', '')}:{loc.get('lineNumber', '')}"
                self.items.append(f"console error: {msg.text} ({where})")

        page.on("console", on_console)
        page.on("pageerror", lambda exc: self.items.append(f"uncaught exception: {exc}"))


@pytest.fixture
def open_page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """``open_page()`` → a page in a new browser context (its own cookies); checked at the end."""
    contexts: list[Any] = []
    problems = Problems()

    def make(viewport: tuple[int, int] = (1440, 900)) -> Any:
        ctx = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
        ctx.set_default_timeout(30_000)
        contexts.append(ctx)
        page = ctx.new_page()
        problems.watch(page)
        return page

    yield make
    for ctx in contexts:
        ctx.close()
    assert not problems.items, "the browser reported errors:\n" + "\n".join(problems.items)


def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def login(page: Any, kiln: Kiln, email: str, password: str, path: str = "/jobs") -> None:
    page.goto(kiln.url + path)
    page.wait_for_selector("#email")
    page.fill("#email", email)
    page.fill("#password", password)
    page.click("form button[type=submit]")
    page.wait_for_selector("#logout")


def login_demo(page: Any, kiln: Kiln, path: str = "/jobs") -> None:
    login(page, kiln, kiln.demo["email"], kiln.demo["password"], path)
