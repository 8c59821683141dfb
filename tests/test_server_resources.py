"""What the server may use, shown to the visitor: the About page's lines, the Train page's reason for one run
at a time, a host too small to train, and the server's own PyTorch threads (AppTest, in this process,
with a fake :class:`Resources` value standing for the container).
"""

from __future__ import annotations

import threading

import pytest
import streamlit as st
import torch
from streamlit.testing.v1 import AppTest

import app.services
from app import state, warmup
from lstm_core.runs import capacity
from lstm_core.system.resources import Resources
from tests.containers import FOUR_CPUS_EIGHT_GB, GIB, ONE_CPU_ONE_GIB, ROOT, TINY_QUOTA, clear_settings

ENTRY = str(ROOT / "streamlit_app.py")


@pytest.fixture
def server_with(monkeypatch, tmp_path):
    """Makes the app's server (AppTest, in this process) see ``found`` as what it may use."""
    clear_settings(monkeypatch)
    monkeypatch.setenv("LSTM_PLAYHOUSE_DATA", str(tmp_path / "data"))
    monkeypatch.setattr(warmup, "start", lambda *chores: None)  # no background work beside the tests

    def given(found: Resources) -> AppTest:
        monkeypatch.setattr(app.services, "available_resources", lambda: found)
        st.cache_resource.clear()
        st.cache_data.clear()
        at = AppTest.from_file(ENTRY, default_timeout=60).run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    yield given
    st.cache_resource.clear()


def markdown_lines(at: AppTest) -> list[str]:
    return [line for element in at.markdown for line in element.value.splitlines()]


def test_the_about_page_says_what_this_server_has_and_what_each_run_may_use(server_with):
    at = server_with(ONE_CPU_ONE_GIB).switch_page("app/pages/about.py").run()
    assert not at.exception
    lines = markdown_lines(at)
    expected = [
        "- CPUs: 1, from cgroup v2 cpu.max (100000 100000)",
        "- Memory: 1.0 GiB (1,073,741,824 bytes), from cgroup v2 memory.max",
        "- Runs at once: 1 (this server has 1 CPU and 1.0 GiB: one run at a time)",
        "- Threads per run: 1",
        "- Memory per run: up to 674 MB",
    ]
    assert lines[lines.index(expected[0]) :][:5] == expected
    at = server_with(FOUR_CPUS_EIGHT_GB).switch_page("app/pages/about.py").run()
    lines = markdown_lines(at)
    assert "- Runs at once: 4" in lines and "- Memory per run: up to 1.0 GB" in lines


def test_the_about_page_escapes_the_underscores_of_a_cgroup_v1_source(server_with):
    v1 = Resources(2.0, 4 * GIB, "cgroup v1 cpu.cfs_quota_us / cpu.cfs_period_us (200000 / 100000)", "a test")
    at = server_with(v1).switch_page("app/pages/about.py").run()
    assert r"- CPUs: 2, from cgroup v1 cpu.cfs\_quota\_us / cpu.cfs\_period\_us (200000 / 100000)" in markdown_lines(at)


def test_the_train_page_says_why_only_one_run_fits(server_with):
    at = server_with(ONE_CPU_ONE_GIB)
    at.session_state[state.CORPUS_PLAYS] = ["macbeth"]
    at.switch_page("app/pages/train.py").run()
    assert not at.exception and not at.error
    (summary,) = [c.value for c in at.caption if c.value.startswith("Text: ")]
    assert summary.endswith(
        "Runs training on this server now: 0 of 1 (this server has 1 CPU and 1.0 GiB: one run at a time)."
    )
    assert "of the 674 MB a run may use here" in summary


@pytest.mark.slow
def test_on_a_host_too_small_to_train_start_is_refused_once_and_generate_and_inside_still_work(server_with):
    at = server_with(TINY_QUOTA)
    at.session_state[state.CORPUS_PLAYS] = ["macbeth"]
    at.switch_page("app/pages/train.py").run()
    assert not at.exception
    said = [e.value for e in [*at.error, *at.warning, *at.info] if "cannot train" in e.value]
    assert said == [capacity.training_problem(app.services.limits(), TINY_QUOTA)]  # once, naming what it has
    assert next(b for b in at.button if b.label == "Start training").disabled
    assert not any("one run at a time" in c.value for c in at.caption)
    at.switch_page("app/pages/generate.py").run()
    assert not at.exception
    assert any('class="generated"' in m.value and "thou art more" in m.value for m in at.markdown)
    at.switch_page("app/pages/inside.py").run()
    assert not at.exception and not at.error
    assert len(at.get("vega_lite_chart")) == 3  # the demo model's heatmap, a unit's line, the word map


def test_the_server_gives_pytorch_the_threads_its_resources_allow(server_with, monkeypatch):
    # 4 CPUs and 2 GiB: one run fits beside the server, with the 4 CPUs' threads; the server's own
    # PyTorch threads are set to that once, as its first background chore after the first page.
    chores: list = []
    monkeypatch.setattr(warmup, "start", lambda *given: chores.extend(given))
    server_with(Resources(4.0, 2 * GIB, "a test", "a test"))
    assert chores[0] == app.services.torch_threads
    seen: list[int] = []
    try:
        chore = threading.Thread(target=chores[0])  # the background thread the server runs it in
        chore.start()
        chore.join()
        later = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))  # a page's script run
        later.start()
        later.join()
    finally:
        torch.set_num_threads(1)
    assert seen == [4]
