"""The app in a container of 1 CPU and 1 GiB, as a visitor sees it: the About page says what the server
has and what each run may use, and the Train page why only one run trains at a time.

The server runs under a private cgroup v2 view of that quota (tests/containers.py: root and a
private mount; skipped with the reason where this machine allows neither), with no caps set, so
every figure on the pages is one the app sized by itself. A screenshot of the About page's lines
lands in ``test-artifacts/about-resource-lines.png``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import ARTIFACTS, Server, serving
from tests.browser.test_visitor import expect_no_error, go_to, open_app
from tests.containers import cgroup_prefix

CAPS = ("LSTM_PLAYHOUSE_THREADS", "LSTM_PLAYHOUSE_MAX_RUNS", "LSTM_PLAYHOUSE_RUN_MEMORY_MB")
LINES = [
    "CPUs: 1, from cgroup v2 cpu.max (100000 100000)",
    "Memory: 1.0 GiB (1,073,741,824 bytes), from cgroup v2 memory.max",
    "Runs at once: 1 (this server has 1 CPU and 1.0 GiB: one run at a time)",
    "Threads per run: 1",
    "Memory per run: up to 674 MB",
]


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    prefix = cgroup_prefix("100000 100000", "1073741824")
    folder = tmp_path_factory.mktemp("one-cpu-one-gib")
    with serving(Server(folder / "data", folder / "server.log", prefix=prefix, unset=CAPS)) as server:
        yield server


def test_the_about_and_train_pages_say_what_a_one_cpu_one_gib_container_allows(small_server, page: Page):
    open_app(page, small_server.url)
    go_to(page, "About")
    expect(page.get_by_role("heading", name="This server")).to_be_visible()
    for line in LINES:
        expect(page.get_by_role("listitem").filter(has_text=line)).to_be_visible()
    # The section from its heading to the last line, as the visitor sees it (boxes in the viewport's
    # coordinates: the section is brought into it first).
    resource_list = page.locator("ul").filter(has_text=LINES[0])
    resource_list.scroll_into_view_if_needed()
    heading = page.get_by_role("heading", name="This server").bounding_box()
    lines = resource_list.bounding_box()
    assert heading is not None and lines is not None
    ARTIFACTS.mkdir(exist_ok=True)
    top, bottom = heading["y"] - 8, lines["y"] + lines["height"] + 8
    left, right = min(heading["x"], lines["x"]) - 8, max(heading["x"] + heading["width"], lines["x"] + lines["width"])
    clip = {"x": left, "y": top, "width": right - left + 8, "height": bottom - top}
    page.screenshot(path=ARTIFACTS / "about-resource-lines.png", clip=clip)
    expect_no_error(page)

    go_to(page, "Train")
    summary = page.get_by_text(re.compile(r"^Text: "))
    expect(summary).to_contain_text(
        "Runs training on this server now: 0 of 1 (this server has 1 CPU and 1.0 GiB: one run at a time)."
    )
    expect(page.get_by_role("button", name="Start training")).to_be_enabled()
    expect_no_error(page)
