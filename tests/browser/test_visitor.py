"""What a visitor sees in a real browser: the real server, the websocket, widgets, live charts.

Each test is one scenario of a visitor and waits on what the page shows, never on sleeps. The
bounds are generous (this machine may be busy); bench/bench_app.py measures the real times.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect

from lstm_core.text.corpus import bundled_plays
from tests.browser.conftest import ARTIFACTS

# Two texts of different plays and lengths, so that each visitor's text and run can be told apart;
# big enough that a Quick run lasts some seconds (the chart must be seen growing), small enough
# that it ends soon.
TEXTS = {
    "comedies": ("the-comedy-of-errors", "twelfth-night", "as-you-like-it"),
    "tragedies": ("macbeth", "julius-caesar"),
}


@pytest.fixture(scope="module")
def texts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("texts")
    paths = {}
    for name, plays in TEXTS.items():
        path = folder / f"{name}.txt"
        path.write_text(bundled_plays(plays).text, encoding="utf-8")
        paths[name] = path
    return paths


def open_app(page: Page, url: str) -> None:
    page.goto(url)
    expect(page.get_by_role("heading", name="Data")).to_be_visible()


def go_to(page: Page, title: str) -> None:
    page.get_by_role("link", name=title).click()
    expect(page.get_by_role("heading", name=title)).to_be_visible()


def expect_no_error(page: Page) -> None:
    expect(page.locator('[data-testid="stException"]')).to_have_count(0)


def upload_text(page: Page, path: Path, accepted: bool = True) -> None:
    """Upload a text on the Data page; an accepted one is waited for until the page describes it."""
    page.get_by_text("Your own text", exact=True).click()
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(path)
    if accepted:  # the uploader shows the name at once; the page's description only once it is read
        expect(page.get_by_text(re.compile(rf"^{re.escape(path.name)}: [\d.]+ MB"))).to_be_visible()


def train_quick(page: Page) -> Locator:
    """Start a Quick-preset run on the chosen text; returns the progress bar's text."""
    go_to(page, "Train")
    page.get_by_role("button", name="Quick", exact=True).click()
    start = page.get_by_role("button", name="Start training")
    expect(start).to_be_enabled()
    start.click()
    return page.get_by_text(re.compile(r"(Starting\.\.\.|Training\.\.\.|Finished\.) step [\d,]+ of [\d,]+"))


def steps_done(progress: Locator) -> int:
    return int(re.search(r"step ([\d,]+) of", progress.inner_text()).group(1).replace(",", ""))


def wait_finished(page: Page) -> None:
    expect(page.get_by_text(re.compile(r"^Finished\. [\d,]+ steps in"))).to_be_visible(timeout=240_000)
    expect(page.get_by_role("button", name="Download the model (.pt)")).to_be_visible()


def test_cold_start_opens_the_data_page(server, visitor: Page):
    started = time.monotonic()
    open_app(visitor, server.url)
    expect(visitor.get_by_text("Words in the text")).to_be_visible(timeout=60_000)
    assert time.monotonic() - started < 60
    expect(visitor.locator('[data-testid="stVegaLiteChart"]')).to_have_count(2)  # top words and Zipf
    expect_no_error(visitor)
    expect(visitor.locator('[data-testid="stAlert"]')).to_have_count(0)
    for title in ("Data", "Train", "Generate", "About"):
        expect(visitor.get_by_role("link", name=title)).to_be_visible()


def test_training_a_small_model_shows_live_charts_and_a_download(server, visitor: Page, texts):
    open_app(visitor, server.url)
    upload_text(visitor, texts["comedies"])
    expect(visitor.get_by_text("comedies.txt").first).to_be_visible()
    go_to(visitor, "Train")
    visitor.get_by_role("button", name="Quick", exact=True).click()
    visitor.get_by_text("Model and training settings").click()
    epochs = visitor.get_by_role("slider", name="epochs")
    epochs.focus()
    epochs.press("End")  # a long run: it is stopped below, once its charts have moved
    expect(epochs).to_have_value("100")
    expect(visitor.get_by_text(re.compile(r"; 100 epochs of [\d,]+ steps;"))).to_be_visible()
    visitor.get_by_role("button", name="Start training").click()
    progress = visitor.get_by_text(re.compile(r"(Starting|Training)\.\.\. step [\d,]+ of [\d,]+"))
    expect(progress).to_be_visible()
    chart = visitor.locator('[data-testid="stVegaLiteChart"]').first
    expect(chart).to_be_visible()
    first_step, first_image = steps_done(progress), chart.screenshot()
    # While the run goes on, the same chart element redraws with more points.
    expect(progress).not_to_have_text(re.compile(rf"step {first_step:,} of"))
    assert steps_done(progress) > first_step
    deadline = time.monotonic() + 60
    while chart.screenshot() == first_image and time.monotonic() < deadline:
        visitor.wait_for_timeout(250)
    assert chart.screenshot() != first_image, "the loss chart did not change while training ran"
    visitor.get_by_test_id("stMainBlockContainer").get_by_role("button", name="Stop").click()
    expect(visitor.get_by_text(re.compile(r"^Stopped\. You can resume it\. step [\d,]+ of"))).to_be_visible()
    expect(visitor.get_by_role("button", name="Download the model (.pt)")).to_be_visible()
    expect(visitor.get_by_role("button", name="Resume")).to_be_enabled()
    expect(visitor.get_by_text("What the model writes for the recipe's prime texts")).to_be_visible()
    expect_no_error(visitor)


def open_generate(page: Page, url: str) -> None:
    open_app(page, url)
    go_to(page, "Generate")
    expect(page.get_by_text(re.compile(r"^Demo model \(shipped"))).to_be_visible()


def test_moving_the_temperature_regenerates_the_continuation_in_place(server, visitor: Page):
    open_generate(visitor, server.url)
    visitor.get_by_role("radio", name="thou art more").click()
    expect(visitor.get_by_role("textbox", name="Prime text")).to_have_value("thou art more")
    text = visitor.locator(".generated").first
    expect(text).to_have_text(re.compile(r"^thou art more \S+"))
    before = text.inner_text()
    visitor.evaluate("window.sameDocument = true")  # lost if the page reloads
    slider = visitor.get_by_role("slider", name=re.compile("^Temperature"))
    expect(slider).to_have_value("0.8")
    slider.focus()
    for _ in range(6):
        slider.press("ArrowRight")
    expect(slider).to_have_value("1.1")
    expect(text).not_to_have_text(before)
    expect(text).to_have_text(re.compile(r"^thou art more \S+"))
    assert visitor.evaluate("window.sameDocument") is True
    expect_no_error(visitor)


def test_step_by_step_picks_a_candidate_and_undoes_it(server, visitor: Page):
    open_generate(visitor, server.url)
    visitor.get_by_role("tab", name="Step by step").click()
    panel = visitor.get_by_role("tabpanel", name="Step by step")
    expect(panel.locator('[data-testid="stVegaLiteChart"]').first).to_be_visible()  # the candidates
    text = panel.locator(".generated")
    prime = text.inner_text()
    candidates = visitor.get_by_role("radiogroup", name="Or pick the next word").get_by_role("radio")
    expect(candidates).to_have_count(12)
    word = candidates.nth(2).inner_text()  # not the top word: the visitor's own choice
    candidates.nth(2).click()
    expect(text).to_have_text(f"{prime} {word}")
    undo = panel.get_by_role("button", name="Undo")
    expect(undo).to_be_enabled()
    undo.click()
    expect(text).to_have_text(prime)
    expect(undo).to_be_disabled()
    panel.get_by_role("button", name="Take the top word").click()
    expect(text).to_have_text(re.compile(rf"^{re.escape(prime)} \S+$"))
    expect_no_error(visitor)


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "empty.txt is empty"), (b"\x7fELF\x02\x01\x01\x00\x00\x00" * 50, "looks like a binary file")],
    ids=["empty", "binary"],
)
def test_a_bad_upload_shows_a_clear_error_and_the_app_still_works(server, visitor: Page, tmp_path, content, message):
    path = tmp_path / ("program.txt" if content else "empty.txt")
    path.write_bytes(content)
    open_app(visitor, server.url)
    upload_text(visitor, path, accepted=False)
    expect(visitor.locator('[data-testid="stAlert"]').filter(has_text=message)).to_be_visible()
    # The Train page says what is missing instead of failing.
    go_to(visitor, "Train")
    expect(visitor.get_by_text("No text is uploaded yet")).to_be_visible()
    # Back to the bundled plays: the statistics come back.
    go_to(visitor, "Data")
    visitor.get_by_text("Bundled plays (offline)", exact=True).click()
    expect(visitor.get_by_text("Words in the text")).to_be_visible()
    expect_no_error(visitor)


def test_two_visitors_train_at_once_and_each_sees_only_their_own(server, browser, texts):
    pages = {}
    contexts = []
    try:
        for name in texts:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            contexts.append(context)
            page = pages[name] = context.new_page()
            open_app(page, server.url)
            upload_text(page, texts[name])
            expect(page.get_by_text(f"{name}.txt").first).to_be_visible()
        progress = {name: train_quick(page) for name, page in pages.items()}
        for bar in progress.values():
            expect(bar).to_be_visible()
        for page in pages.values():
            wait_finished(page)
        totals = {name: re.search(r"of ([\d,]+)", bar.inner_text()).group(1) for name, bar in progress.items()}
        assert totals["comedies"] != totals["tragedies"]  # different texts, different runs
        labels = {}
        for name, page in pages.items():
            other = next(n for n in pages if n != name)
            main = page.get_by_test_id("stMainBlockContainer")
            expect(main.get_by_text(f"Text: {name}.txt")).to_be_visible()
            expect(main.get_by_text(f"{other}.txt")).to_have_count(0)
            expect(progress[name]).to_have_text(re.compile(rf"step {totals[name]} of {totals[name]}"))
            go_to(page, "Generate")
            label = page.get_by_text(re.compile(r"^Your run of "))
            expect(label).to_have_count(1)  # only this visitor's own run
            labels[name] = label.inner_text()
            assert f"; {totals[name]} steps, validation perplexity" in labels[name]
            expect_no_error(page)
        assert labels["comedies"] != labels["tragedies"]
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        for name, page in pages.items():
            page.screenshot(path=ARTIFACTS / f"test_two_visitors_{name}.png", full_page=True)
        for context in contexts:
            context.close()
