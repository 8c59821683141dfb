"""A real app server and headless Chromium for the browser tests.

The server is ``streamlit run streamlit_app.py`` in a subprocess on a free port of 127.0.0.1,
started once for the module and stopped by its process group at the end, also when a test fails.
Chromium is Debian's (``/usr/bin/chromium``) driven by Playwright; without it every test here is
skipped. Screenshots of what each scenario showed land in ``test-artifacts/``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from bench.bench_app import CHROMIUM_FLAGS, free_port

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = Path(os.environ.get("LSTM_PLAYHOUSE_CHROMIUM", "/usr/bin/chromium"))
START_TIMEOUT_S = 120


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    browser_items = [item for item in items if Path(item.fspath).is_relative_to(here)]
    missing = f"no Chromium at {CHROMIUM} (sudo apt-get install chromium)"
    if browser_items and not CHROMIUM.exists() and os.environ.get("LSTM_PLAYHOUSE_REQUIRE_BROWSER"):
        raise pytest.UsageError(f"{missing}, and LSTM_PLAYHOUSE_REQUIRE_BROWSER is set: the browser tests must run")
    for item in browser_items:
        item.add_marker(pytest.mark.browser)
        if not CHROMIUM.exists():
            item.add_marker(pytest.mark.skip(reason=missing))


class Server:
    """``streamlit run`` in a process group of its own (its training processes included); ``flags``
    are more of ``streamlit run``'s settings (``--server.runOnSave``, ``true``, ...), ``prefix`` a
    command the server runs under (``unshare ...``), ``unset`` environment variables it goes without,
    and ``settings`` more it gets (``LSTM_PLAYHOUSE_RUNNER``, ...)."""

    def __init__(
        self,
        data_dir: Path,
        log_path: Path,
        port: int | None = None,
        flags: Sequence[str] = (),
        prefix: Sequence[str] = (),
        unset: Sequence[str] = (),
        settings: dict[str, str] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "LSTM_PLAYHOUSE_DATA": str(data_dir),
            "LSTM_PLAYHOUSE_THREADS": "1",
            # Nothing may leave this machine: a Gutenberg download would hit a closed port.
            "LSTM_PLAYHOUSE_GUTENBERG_URL": f"http://127.0.0.1:{free_port()}/pg100.txt",
            **(settings or {}),
        }
        env = {name: value for name, value in env.items() if name not in unset}
        command = [*prefix, sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.headless", "true"]
        command += ["--server.port", str(self.port), "--server.address", "127.0.0.1"]
        command += ["--browser.gatherUsageStats", "false", *flags]
        self.log = log_path.open("ab")
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the app server exited with {self.process.returncode}; see {self.log.name}")
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as response:
                    if response.read() == b"ok":
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"the app server did not answer on {self.url} within {START_TIMEOUT_S} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=20)
        self.log.close()


@contextlib.contextmanager
def serving(app_server: Server) -> Iterator[Server]:
    """``app_server`` once it answers, stopped at the end (also when the test fails)."""
    try:
        app_server.wait_healthy()
        yield app_server
    finally:
        app_server.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("server")
    with serving(Server(folder / "data", folder / "server.log")) as app_server:
        yield app_server


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import expect, sync_playwright

    # The first render of a page imports torch and reads the plays: give what a visitor waits for
    # a generous bound (these tests check behaviour; bench/bench_app.py measures the time).
    expect.set_options(timeout=30_000)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()


@contextlib.contextmanager
def new_visitor(browser, name: str) -> Iterator[object]:
    """A fresh browser context (a new visitor) with one page; a screenshot ``name``.png at the end."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    try:
        yield page
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        try:
            page.screenshot(path=ARTIFACTS / f"{name}.png", full_page=True)
        finally:
            context.close()


@pytest.fixture
def visitor(browser, server, request: pytest.FixtureRequest) -> Iterator[object]:
    """A new visitor of the module's server."""
    with new_visitor(browser, request.node.name) as page:
        yield page


@pytest.fixture
def page(browser, request: pytest.FixtureRequest) -> Iterator[object]:
    """A new visitor, for a test that starts a server of its own."""
    with new_visitor(browser, request.node.name) as visitor:
        yield visitor
