"""Runs trained as Ray jobs, seen in a real browser: two web servers sharing one data folder, and a
cluster that stops mid-run.

The servers run with ``LSTM_PLAYHOUSE_RUNNER=ray`` against a real Ray head on this machine
(tests/ray_cluster.py, 127.0.0.1, token authentication on). The two-server scenario is what a
load balancer does to a visitor: the same address (the same workspace key) answered by another
server, which must show the run, its live progress, and stop it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from lstm_core.runs import folder as run_files
from lstm_core.runs import liveness
from tests.browser.conftest import Server, new_visitor
from tests.browser.test_runs import (
    PROGRESS,
    expect_the_run_writes_on_generate,
    runs_of,
    start_quick_run,
    step_shown,
    wait_for,
)
from tests.conftest import start_ray_head

pytestmark = pytest.mark.slow


def ray_settings(address: str) -> dict[str, str]:
    return {"LSTM_PLAYHOUSE_RUNNER": "ray", "LSTM_PLAYHOUSE_RAY_ADDRESS": address}


def job_status(address: str, folder: Path) -> str:
    from ray.job_submission import JobSubmissionClient

    job_id = json.loads((folder / run_files.PROCESS_FILE).read_text())["job_id"]
    return JobSubmissionClient(address).get_job_status(job_id).value


@pytest.fixture(scope="module")
def two_servers(ray_head, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    """Two app servers on two ports, one data folder, both training on the session's Ray head."""
    folder = tmp_path_factory.mktemp("two-servers")
    settings = ray_settings(ray_head.address)
    servers = [Server(folder / "data", folder / f"server-{i}.log", settings=settings) for i in (1, 2)]
    try:
        for server in servers:
            server.wait_healthy()
        yield servers[0], servers[1]
    finally:
        for server in servers:
            server.stop()


def test_a_ray_run_started_on_one_server_is_shown_and_stopped_by_another_and_its_model_writes(
    two_servers, ray_head, browser, page
):
    first, second = two_servers
    start_quick_run(page, first)
    wait_for(lambda: runs_of(first, page) and runs_of(first, page)[0].step >= 20)
    (run,) = runs_of(first, page)
    assert json.loads((run.path / run_files.PROCESS_FILE).read_text())["runner"] == "ray"
    assert job_status(ray_head.address, run.path) == "RUNNING"  # a Ray job, not a child of the server
    # The same address, answered by the other server (as a load balancer may send the visitor there).
    with new_visitor(browser, "the_second_server") as elsewhere:
        elsewhere.goto(page.url.replace(first.url, second.url))
        expect(elsewhere.get_by_role("heading", name="Train")).to_be_visible()
        expect(elsewhere.get_by_text(PROGRESS)).to_be_visible()
        before = step_shown(elsewhere)
        expect(elsewhere.get_by_text(PROGRESS)).not_to_have_text(re.compile(rf"step {before:,} of"))  # live
        elsewhere.get_by_test_id("stMainBlockContainer").get_by_role("button", name="Stop").click()
        stopped = re.compile(r"^Stopped\. You can resume it\. [\d,]+ steps in")
        expect(elsewhere.get_by_text(stopped)).to_be_visible(timeout=60_000)
    expect(page.get_by_text(stopped)).to_be_visible()  # the first server sees the same end
    run = run_files.read_run(run.path)
    assert run.state == "stopped" and run.has_last and run.has_best  # it saved before it stopped
    wait_for(lambda: job_status(ray_head.address, run.path) == "SUCCEEDED", timeout=30)
    expect_the_run_writes_on_generate(page, run.id)


def test_a_cluster_stopped_mid_run_is_shown_as_not_answering_and_the_run_resumes_once_it_is_back(
    browser, page, tmp_path
):
    head = start_ray_head(tmp_path)
    server = Server(tmp_path / "data", tmp_path / "server.log", settings=ray_settings(head.address))
    try:
        server.wait_healthy()
        start_quick_run(page, server)
        wait_for(lambda: runs_of(server, page) and runs_of(server, page)[0].has_last)
        (run,) = runs_of(server, page)
        head.stop()  # the whole cluster, and the job's process with it
        expect(page.get_by_text(re.compile(r"^The training cluster is not answering \("))).to_be_visible()
        resume = page.get_by_role("button", name="Resume")
        expect(resume).to_be_disabled()  # nobody can tell whether it still trains
        expect(page.get_by_test_id("stMainBlockContainer").get_by_role("button", name="Stop")).to_be_enabled()
        head.start()  # back on the same address, with no record of the old job
        alert = page.get_by_text(re.compile(r"^Ended unexpectedly\. the training job is gone from the cluster"))
        expect(alert).to_be_visible(timeout=(liveness.STALE_AFTER_S + 30) * 1000)
        expect(alert).to_contain_text(re.compile(r"Its last checkpoint \(step [\d,]+\) is kept"))
        expect(resume).to_be_enabled()
        saved = run_files.read_run(run.path).step
        resume.click()
        expect(page.get_by_text(PROGRESS)).to_be_visible()
        wait_for(lambda: run_files.read_run(run.path).state == "running" and run_files.read_run(run.path).step > saved)
        assert job_status(head.address, run.path) == "RUNNING"  # a new job on the cluster that came back
        page.get_by_test_id("stMainBlockContainer").get_by_role("button", name="Stop").click()
        stopped = page.get_by_text(re.compile(r"^Stopped\. You can resume it\. [\d,]+ steps in"))
        expect(stopped).to_be_visible(timeout=60_000)
    finally:
        server.stop()
        head.remove()
