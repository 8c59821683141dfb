"""Share links in a real browser: the address holds the result, a fresh browser shows the same text."""

from __future__ import annotations

import re
import time
from urllib.parse import parse_qs, urlparse

from playwright.sync_api import Page, expect

from tests.browser.test_visitor import expect_no_error, open_generate


def continuation(page: Page) -> str:
    """The continuation once the page has settled: no script run going, the same text a second later.

    A slider moved by four key presses asks for four reruns; the address shows the last value at once,
    while the text can still be an earlier value's for a moment.
    """
    text = page.locator(".generated").first
    app = page.get_by_test_id("stApp")
    expect(text).to_have_text(re.compile(r"^thou art more \S+"))
    deadline = time.monotonic() + 30
    while True:
        expect(app).to_have_attribute("data-test-script-state", "notRunning")
        first = text.inner_text()
        page.wait_for_timeout(1000)
        expect(app).to_have_attribute("data-test-script-state", "notRunning")
        if text.inner_text() == first or time.monotonic() > deadline:
            return text.inner_text()


def test_the_address_reproduces_the_continuation_in_a_fresh_browser(server, browser, visitor: Page):
    open_generate(visitor, server.url)
    before = continuation(visitor)
    history = visitor.evaluate("history.length")
    slider = visitor.get_by_role("slider", name=re.compile("^Temperature"))
    slider.focus()
    for _ in range(4):
        slider.press("ArrowRight")
    expect(slider).to_have_value("1")
    expect(visitor.locator(".generated").first).not_to_have_text(before)
    expect(visitor).to_have_url(re.compile(r"temperature=1(&|$)"))
    after = continuation(visitor)
    assert visitor.evaluate("history.length") == history  # moving a slider adds no Back entries
    query = parse_qs(urlparse(visitor.url).query)
    assert query["model"] == ["demo"] and "k" in query  # the model, and the (private) workspace key
    # The address itself, in another browser: the same text, word for word.
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        other = context.new_page()
        other.goto(visitor.url)
        expect(other.get_by_role("heading", name="Generate")).to_be_visible()
        assert continuation(other) == after
        # The "Copy link" address, without the key: the same text again, in a workspace of its own.
        visitor.get_by_role("button", name="Copy link").click()
        link = visitor.get_by_test_id("stCode").filter(has_text="generate?").inner_text().strip()
        assert "k" not in parse_qs(urlparse(link).query)
        fresh = context.new_page()
        fresh.goto(link)
        expect(fresh.get_by_role("heading", name="Generate")).to_be_visible()
        assert continuation(fresh) == after
        assert parse_qs(urlparse(fresh.url).query)["k"] != query["k"]
        expect_no_error(fresh)
    finally:
        context.close()


def test_a_tampered_link_says_what_it_changed(server, visitor: Page):
    visitor.goto(f"{server.url}/generate?model=run:nothing&temperature=9&method=Sampling&length=12")
    expect(visitor.get_by_role("heading", name="Generate")).to_be_visible()
    notice = visitor.get_by_text(re.compile(r"^This link's settings did not all fit"))
    expect(notice).to_be_visible()
    expect(notice).to_contain_text("Temperature")
    expect(notice).to_contain_text("not one you can open here")
    expect(visitor.get_by_role("slider", name=re.compile("^Temperature"))).to_have_value("2")
    text = continuation(visitor)
    assert len(text.split()) == 3 + 12
    expect_no_error(visitor)
