"""Why gates in a real browser: the demo LSTM beside a visitor's plain RNN, compared on the Inside page."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlparse

from playwright.sync_api import Page, expect

from app.visitor import Workspace
from lstm_core.config import Config
from lstm_core.data.dataset import prepare
from lstm_core.explain.recall import NAMES
from lstm_core.training.trainer import Trainer
from tests.browser.test_visitor import expect_no_error, go_to, open_app
from tests.conftest import TINY_TEXT
from tests.workspaces import put_run

# The characters' names the memory test asks about (so that it runs for this model too; first, so that
# they are in the training part of the text), then the sonnet.
TEXT = "\n".join(f"o {name} thou art more lovely" for name in NAMES * 3) + "\n" + TINY_TEXT


def test_why_gates_compares_the_demo_lstm_with_a_plain_rnn_and_reads_the_chart(server, visitor: Page):
    open_app(visitor, server.url)
    go_to(visitor, "Inside the LSTM")
    key = parse_qs(urlparse(visitor.url).query)["k"][0]
    config = Config(cell="rnn", rnn_size=24, batch_size=4, training_seq_len=8, epochs=1, eval_every=0)
    run = Trainer(config, prepare(TEXT, 0, (0.8, 0.1, 0.1))).fit().checkpoint.without_training_state()
    put_run(Workspace.for_key(key, server.data_dir), run, "20260101-000000-0000abcd")
    visitor.reload()
    expect(visitor.get_by_role("heading", name="Inside the LSTM")).to_be_visible()
    visitor.get_by_role("tab", name="Why gates").click()
    panel = visitor.get_by_role("tabpanel", name="Why gates")
    # Two models chosen for the visitor: the page's (the demo, an LSTM) and their run of another cell.
    expect(panel.get_by_test_id("stMultiSelect").locator("[data-tag]")).to_have_count(2)
    panel.get_by_role("button", name="Compare").click()
    sentence = panel.get_by_text(re.compile(r"words back, the gradient of the last word's loss is"))
    expect(sentence).to_be_visible()
    read = sentence.inner_text()
    assert re.match(r"^About 10 words back, the gradient of the last word's loss is ", read), read
    assert "for the LSTM (demo)" in read and "for the plain RNN (your run" in read
    assert re.search(r"(1/[\d,]+ of|[\d.]+ times|[\d.]+ of) its size at the last word", read), read
    charts = panel.locator('[data-testid="stVegaLiteChart"]')
    expect(panel.get_by_text("The memory test cannot run")).to_have_count(0)
    expect(charts).to_have_count(2)  # the gradient through time, and the memory test
    expect(charts.nth(0)).to_be_visible()
    expect(charts.nth(1)).to_be_visible()
    expect_no_error(visitor)
    charts.nth(0).scroll_into_view_if_needed()  # the screenshot shows the chart and its sentence
