"""A visitor's runs in a real browser: a reload, a killed training process, a server restart.

The app's runs are folders on disk trained by processes of their own, so what a visitor sees must
survive all three. Each scenario here has its own server (the restart stops one).
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from playwright.sync_api import Page, expect

from app.visitor import Workspace
from lstm_core.runs import folder as run_files
from tests.browser.conftest import Server, new_visitor


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[Server]:
    server = Server(tmp_path / "data", tmp_path / "server.log")
    try:
        server.wait_healthy()
        yield server
    finally:
        server.stop()


@pytest.fixture
def page(browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A new visitor (of the test's own server)."""
    with new_visitor(browser, request.node.name) as visitor:
        yield visitor


def key_of(page: Page) -> str:
    return parse_qs(urlparse(page.url).query)["k"][0]


def runs_of(server: Server, page: Page) -> list[run_files.RunSummary]:
    return run_files.list_runs(Workspace.for_key(key_of(page), server.data_dir).runs)


def wait_for(condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.1)


def open_train_page(page: Page, url: str) -> None:
    page.goto(url)
    expect(page.get_by_role("heading", name="Train")).to_be_visible()


def start_quick_run(page: Page, server: Server) -> None:
    """A Quick run on all the plays (the default text): about 2,000 steps, long enough to reload in."""
    page.goto(server.url)
    expect(page.get_by_role("heading", name="Data")).to_be_visible()
    page.get_by_role("link", name="Train").click()
    expect(page.get_by_role("heading", name="Train")).to_be_visible()
    page.get_by_role("button", name="Quick", exact=True).click()
    page.get_by_role("button", name="Start training").click()


PROGRESS = re.compile(r"(Starting|Training)\.\.\. step ([\d,]+) of ([\d,]+)")


def step_shown(page: Page) -> int:
    found = PROGRESS.search(page.get_by_text(PROGRESS).inner_text())
    return int(found.group(2).replace(",", ""))


def test_a_reload_shows_the_same_run_still_training_and_its_model_once_it_ends(own_server, page):
    start_quick_run(page, own_server)
    wait_for(lambda: runs_of(own_server, page) and runs_of(own_server, page)[0].step >= 20)
    address = page.url
    page.reload()
    expect(page.get_by_role("heading", name="Train")).to_be_visible()
    assert page.url == address  # the workspace key stays in the address
    expect(page.get_by_text(PROGRESS)).to_be_visible()
    before = step_shown(page)
    expect(page.get_by_text(PROGRESS)).not_to_have_text(re.compile(rf"step {before:,} of"))  # it goes on
    assert step_shown(page) > before
    (run,) = runs_of(own_server, page)
    # End it (a whole Quick run on the plays takes a minute or more on a busy 2-core machine).
    page.get_by_test_id("stMainBlockContainer").get_by_role("button", name="Stop").click()
    expect(page.get_by_text(re.compile(r"^Stopped\. You can resume it\. [\d,]+ steps in"))).to_be_visible(
        timeout=60_000
    )
    page.reload()
    page.get_by_role("link", name="Generate").click()
    expect(page.get_by_role("heading", name="Generate")).to_be_visible()
    mine = page.get_by_text(re.compile(r"^Your run of .*[\d,]+ steps"))
    expect(mine).to_be_visible()
    mine.click()
    expect(page).to_have_url(re.compile(rf"model=run%3A{run.id}"))
    expect(page.locator(".generated").first).to_have_text(re.compile(r"^thou art more \S+"))
    assert run_files.read_run(run.path).state == "stopped"


def test_a_killed_training_process_is_reported_with_its_last_checkpoint(own_server, page):
    start_quick_run(page, own_server)
    # Kill it once it has saved a checkpoint (Quick saves at each epoch's end).
    wait_for(lambda: runs_of(own_server, page) and runs_of(own_server, page)[0].has_last)
    (run,) = runs_of(own_server, page)
    os.kill(run.pid, signal.SIGKILL)
    alert = page.get_by_text(re.compile(r"Ended unexpectedly\. the training process ended unexpectedly"))
    expect(alert).to_be_visible(timeout=30_000)
    expect(alert).to_contain_text("killed by signal 9 (SIGKILL)")
    expect(alert).to_contain_text(re.compile(r"Its last checkpoint \(step [\d,]+\) is kept"))
    expect(page.get_by_role("button", name="Download the model (.pt)")).to_be_visible()
    resume = page.get_by_role("button", name="Resume")
    expect(resume).to_be_enabled()
    resume.click()
    expect(page.get_by_text(PROGRESS)).to_be_visible()
    page.get_by_test_id("stMainBlockContainer").get_by_role("button", name="Stop").click()
    expect(page.get_by_text(re.compile(r"^Stopped\. You can resume it\. step"))).to_be_visible(timeout=60_000)


def test_after_a_server_restart_the_model_is_there_and_the_interrupted_run_resumes(own_server, page, tmp_path):
    start_quick_run(page, own_server)
    wait_for(lambda: runs_of(own_server, page) and runs_of(own_server, page)[0].has_last)
    address = page.url
    own_server.stop()  # the whole process group: the server and its training process
    (run,) = runs_of(own_server, page)
    wait_for(lambda: not run_files.read_run(run.path).active, timeout=60)
    assert run_files.read_run(run.path).state == "interrupted"
    restarted = Server(own_server.data_dir, tmp_path / "server.log", port=own_server.port)
    try:
        restarted.wait_healthy()
        page.goto(address.replace("/train", "/"))
        page.get_by_role("link", name="Train").click()
        interrupted = re.compile(r"^Interrupted \(the server was stopping\)\. You can resume it\.")
        expect(page.get_by_test_id("stProgress").get_by_text(interrupted)).to_be_visible()
        page.get_by_role("link", name="Generate").click()
        expect(page.get_by_text(re.compile(r"^Your run of"))).to_be_visible()  # its best checkpoint so far
        page.get_by_role("link", name="Train").click()
        page.get_by_role("button", name="Resume").click()
        expect(page.get_by_text(PROGRESS)).to_be_visible()
        wait_for(lambda: run_files.read_run(run.path).step > run.step)
    finally:
        restarted.stop()
