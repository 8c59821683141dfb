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
from playwright.sync_api import Locator, Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from app.train_page.runs_table import run_labels
from app.visitor import Workspace
from lstm_core.config import PRESETS
from lstm_core.runs import folder as run_files
from tests.browser.conftest import Server, serving
from tests.workspaces import put_history


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[Server]:
    with serving(Server(tmp_path / "data", tmp_path / "server.log")) as server:
        yield server


def key_of(page: Page) -> str:
    return parse_qs(urlparse(page.url).query)["k"][0]


def runs_of(server: Server, page: Page) -> list[run_files.RunSummary]:
    return run_files.list_runs(Workspace.for_key(key_of(page), server.data_dir).runs)


def wait_for(condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.1)


def expect_the_run_writes_on_generate(page: Page, run_id: str) -> None:
    """The run's model is offered on the Generate page, and chosen, it continues the prime text."""
    page.get_by_role("link", name="Generate").click()
    expect(page.get_by_role("heading", name="Generate")).to_be_visible()
    mine = page.get_by_text(re.compile(r"^Your run of .*[\d,]+ steps"))
    expect(mine).to_be_visible()
    mine.click()
    expect(page).to_have_url(re.compile(rf"model=run%3A{run_id}"))
    expect(page.locator(".generated").first).to_have_text(re.compile(r"^thou art more \S+"))


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


PAST_THE_START = re.compile(r"Training\.\.\. step [1-9][\d,]* of ([\d,]+)")
RUNS_COLUMNS = ["started", "settings", "text", "state", "steps", "training time", "best perplexity"]


def runs_table_row(page: Page, row: int = 0) -> dict[str, Locator]:
    """The cells of one row of the "Your runs" table (the page's last table), by column."""
    # The grid draws on a canvas; its cells' text is in the grid's accessible table (hidden from roles).
    cells = page.get_by_test_id("stDataFrame").last.locator('[role="gridcell"]')
    return {column: cells.nth(row * len(RUNS_COLUMNS) + i) for i, column in enumerate(RUNS_COLUMNS)}


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
    expect_the_run_writes_on_generate(page, run.id)
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


def test_the_runs_table_follows_the_run_while_it_trains(own_server, page):
    # The table of runs under the progress bar refreshes with it: once the bar is past step 0, the
    # run's row says it is running, past step 0, of the same number of steps.
    start_quick_run(page, own_server)
    progress = page.get_by_text(PAST_THE_START)
    expect(progress).to_be_visible(timeout=120_000)
    total = PAST_THE_START.search(progress.inner_text()).group(1)
    row = runs_table_row(page)
    expect(row["state"]).to_have_text("running")
    expect(row["steps"]).to_have_text(re.compile(rf"^[1-9][\d,]* of {total}$"))
    expect(row["training time"]).not_to_have_text("-")


def test_the_runs_table_stays_in_place_while_evaluations_add_samples(own_server, page):
    # Each evaluation adds a row of samples above the runs table. The samples keep one height, so
    # the table of runs and its choosers do not move: a move scrolls the page, and the scroll
    # closed any list a visitor had open there.
    start_quick_run(page, own_server)
    samples = page.get_by_test_id("stDataFrame").first.locator('[role="gridcell"]')
    runs = page.get_by_role("heading", name="Your runs")
    title = page.get_by_role("heading", name="Train")

    def runs_table_top() -> float:  # from the page's title: the same however far the page is scrolled
        return runs.bounding_box()["y"] - title.bounding_box()["y"]

    expect(samples.filter(has_text=re.compile(r"^200$"))).to_have_count(1, timeout=120_000)  # the first
    first = runs_table_top()
    expect(samples.filter(has_text=re.compile(r"^600$"))).to_have_count(1, timeout=120_000)  # two more
    expect(samples.filter(has_text=re.compile(r"^400$"))).to_have_count(1)
    assert runs_table_top() == first


# What a failed choice reports of each try: whether the list was open, and where the box stood.
CHOICE_STATE = """box => {
    const main = document.querySelector('[data-testid="stMain"]');
    return `list ${document.querySelector('[role="listbox"]') ? "open" : "closed"}, ` +
        `box at ${Math.round(box.getBoundingClientRect().y)} px, page scrolled ${main ? main.scrollTop : "?"} px`;
}"""


def choose(page: Page, box: str, option: str, shown: Locator) -> None:
    """Choose ``option`` in the select box labelled ``box`` from the keyboard, as a visitor may: type
    its name, then Enter; ``shown`` is what the page shows once it is chosen.

    Anything that scrolls the page closes an open list (so does Playwright's own scroll to the box
    before a click), and while a run trains the page is redrawn every two seconds; a list opened
    with a click and then clicked in is a race with both. Each key typed opens the list again,
    filtered to the name, so the choice lands once the name is typed; it is tried again if not.
    """
    combobox = page.get_by_role("combobox", name=box)
    listed = page.get_by_role("option", name=option, exact=True)
    tries = []
    for attempt in range(5):
        if attempt and shown.is_visible():  # the last try's choice was shown late
            return
        combobox.focus()
        page.keyboard.press("ControlOrMeta+A")
        page.keyboard.type(option)
        try:
            listed.wait_for(timeout=2_000)
            page.keyboard.press("Enter")
            shown.wait_for(timeout=5_000)
            return
        except PlaywrightTimeoutError as error:
            listing = page.get_by_role("option").all_inner_texts()
            tries.append(f"{combobox.evaluate(CHOICE_STATE)}, options {listing}: {str(error).splitlines()[0]}")
            page.keyboard.press("Escape")
    raise AssertionError(f"{option!r} could not be chosen in {box!r}:\n" + "\n".join(tries))


def test_the_run_chooser_and_the_comparison_keep_their_choices_while_a_run_trains(own_server, page):
    # An earlier run in the visitor's workspace, then a run training: the chooser and the
    # comparison under the table are redrawn with it every two seconds and keep what was chosen.
    page.goto(own_server.url)
    page.get_by_role("link", name="Train").click()
    expect(page.get_by_role("heading", name="Train")).to_be_visible()
    workspace = Workspace.for_key(key_of(page), own_server.data_dir)
    losses = [(step, 6.0 - step / 50) for step in range(1, 101)]
    earlier_id = "20260101-000000-0a1b2c3d"
    put_history(workspace, earlier_id, PRESETS["quick"], losses, [(100, 60.0, 250.0)], created=time.time() - 600)
    page.get_by_role("button", name="Quick", exact=True).click()
    page.get_by_role("button", name="Start training").click()
    expect(page.get_by_text(PAST_THE_START)).to_be_visible(timeout=120_000)
    before = step_shown(page)
    expect(page.get_by_text(PROGRESS)).not_to_have_text(re.compile(rf"step {before:,} of"))  # redrawn once
    labels = run_labels(runs_of(own_server, page))  # "07 Dec 14:05, Quick", as the boxes name the runs
    chosen = page.get_by_test_id("stMultiSelect").locator("[data-tag]")
    for label in labels.values():
        choose(page, "Compare runs on one chart", label, chosen.filter(has_text=label))
    page.keyboard.press("Escape")
    expect(chosen).to_have_count(2)
    charts = page.get_by_test_id("stVegaLiteChart")
    expect(charts).to_have_count(3)  # loss, perplexity, and the runs compared
    before = step_shown(page)
    expect(page.get_by_text(PROGRESS)).not_to_have_text(re.compile(rf"step {before:,} of"))  # redrawn since
    expect(chosen).to_have_count(2)
    expect(charts).to_have_count(3)
    expect(runs_table_row(page)["state"]).to_have_text("running")
    # Choosing the earlier run shows it above, and the buttons act on it: it cannot be stopped.
    running_id = next(run_id for run_id in labels if run_id != earlier_id)
    finished = page.get_by_test_id("stProgress").get_by_text(re.compile(r"^Finished\. step 100 of 100"))
    choose(page, "Show this run above", f"{labels[earlier_id]} (finished)", finished)
    stop = page.get_by_test_id("stMainBlockContainer").get_by_role("button", name="Stop")
    expect(stop).to_be_disabled()
    expect(chosen).to_have_count(2)
    choose(page, "Show this run above", f"{labels[running_id]} (running)", page.get_by_text(PROGRESS))
    expect(stop).to_be_enabled()
