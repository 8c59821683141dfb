"""The Inside the LSTM page in a real browser: the heatmap is drawn, not only sent."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.browser.test_visitor import expect_no_error, go_to, open_app


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
