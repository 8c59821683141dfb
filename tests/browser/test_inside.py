"""Inside the LSTM in a real browser: the page's heatmap, and the step tab's walk-through, drawn and live."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.browser.test_visitor import expect_no_error, go_to, open_app, open_generate


def test_the_heatmap_appears_for_the_prime_text_and_for_a_typed_one(server, visitor: Page):
    open_app(visitor, server.url)
    go_to(visitor, "Inside the LSTM")
    expect(visitor.get_by_role("textbox", name="Prime text")).to_have_value("thou art more")
    expect(visitor.get_by_text("The first 3 word(s) are the prime")).to_be_visible()
    heatmap = visitor.get_by_role("tabpanel", name="Heatmap").locator('[data-testid="stVegaLiteChart"]')
    # Visible means Vega drew it: a chart that fails to render stays an empty, zero-sized element.
    expect(heatmap).to_be_visible()
    # A text with the word "if" once stopped the chart rendering (a word inside a Vega expression).
    visitor.get_by_text("Your own text", exact=True).click()
    text = visitor.get_by_role("textbox", name="Your text")
    text.fill("If it were done when 'tis done, then 'twere well it were done quickly.")
    text.press("Control+Enter")
    # The words coloured by the chosen unit (in the "One unit" tab) show that the page redrew.
    # (While the page reruns, the previous text's element may still be there for a moment.)
    expect(visitor.locator(".unit-words").filter(has_text="quickly")).to_have_count(1)
    expect(visitor.locator(".unit-words")).to_have_count(1)
    expect(heatmap).to_be_visible()
    expect_no_error(visitor)


def column_values(table: Locator, column: int, rows: int) -> list[str]:
    """A table's cells in one column, as its accessible grid holds them (the numbers unrounded)."""
    return [table.locator(f'[data-testid="glide-cell-{column}-{row}"]').text_content() for row in range(rows)]


def test_the_step_walkthrough_shows_the_gates_of_the_prime_and_follows_the_temperature(server, visitor: Page):
    open_generate(visitor, server.url)
    visitor.get_by_role("tab", name="Step by step").click()
    panel = visitor.get_by_role("tabpanel", name="Step by step")
    # The gates of the prime's last word: the strips are drawn (a chart that fails to render stays
    # an empty, zero-sized element), beside the candidates chart.
    expect(panel.get_by_text("What reading “more” did to the memory")).to_be_visible()
    charts = panel.locator('[data-testid="stVegaLiteChart"]')
    expect(charts).to_have_count(2)
    expect(charts.nth(1)).to_be_visible()
    table = panel.get_by_test_id("stDataFrame")
    expect(table).to_be_visible()
    # Columns: word, logit z, z / T, p after T, p (drawn); ten candidate rows.
    expect(table.locator('[data-testid="glide-cell-4-9"]')).to_be_attached()
    words, logits, scaled = (column_values(table, column, 10) for column in (0, 1, 2))
    drawn = column_values(table, 4, 10)
    slider = visitor.get_by_role("slider", name=re.compile("^Temperature"))
    expect(slider).to_have_value("0.8")
    slider.focus()
    for _ in range(6):
        slider.press("ArrowLeft")
    expect(slider).to_have_value("0.5")
    expect(table.locator('[data-testid="glide-cell-2-0"]')).not_to_have_text(scaled[0])
    # Each press is a rerun: a quick server draws the tables of 0.7 and 0.6 on the way to 0.5.
    expected = pytest.approx([float(logit) / 0.5 for logit in logits], rel=1e-5)  # z / T with T = 0.5

    def settled() -> bool:
        values = column_values(table, 2, 10)
        return all(values) and [float(value or "nan") for value in values] == expected

    deadline = time.monotonic() + 30
    while not settled() and time.monotonic() < deadline:
        visitor.wait_for_timeout(100)
    assert column_values(table, 0, 10) == words  # dividing by T keeps the order
    assert column_values(table, 1, 10) == logits  # and the logits
    colder = [float(value) for value in column_values(table, 2, 10)]
    assert colder == expected
    assert column_values(table, 4, 10) != drawn  # colder: the probabilities move
    expect_no_error(visitor)
