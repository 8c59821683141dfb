"""The caps' defaults sized to what the process may use (lstm_core/runs/capacity.py), and a host too small to train.

The defaults come from a fake :class:`Resources` value (a container's CPUs and memory); then, as
root where a private mount is allowed, the caps in a fresh process under a cgroup v2 view of 1 CPU
and 1 GiB admit one *Quick* run at a time, with one thread.
"""

from __future__ import annotations

import json
import sys
import textwrap

import pytest

from lstm_core.data.dataset import prepare
from lstm_core.runs import capacity
from lstm_core.runs import control as runs
from lstm_core.runs import folder as run_files
from lstm_core.runs.limits import RunLimits
from lstm_core.system.resources import Resources
from tests.conftest import TINY_CONFIG, TINY_TEXT
from tests.containers import FOUR_CPUS_EIGHT_GB, GIB, ONE_CPU_ONE_GIB, TINY_QUOTA, clear_settings, under_cgroup


@pytest.fixture
def no_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_settings(monkeypatch)


# ---- the caps' defaults ---------------------------------------------------------------------------


def test_one_cpu_and_one_gib_give_one_run_at_a_time_with_one_thread(no_settings):
    limits = RunLimits.from_environment(resources=ONE_CPU_ONE_GIB)
    assert (limits.max_runs, limits.threads) == (1, 1)
    assert limits.run_memory_mb == pytest.approx(
        GIB / 1e6 - capacity.SERVER_MEMORY_MB
    )  # all the room beside the server
    assert capacity.training_problem(limits, ONE_CPU_ONE_GIB) is None
    assert capacity.one_run_reason(limits, ONE_CPU_ONE_GIB) == "this server has 1 CPU and 1.0 GiB: one run at a time"


def test_four_cpus_and_eight_gb_train_one_run_per_cpu_at_the_full_cap(no_settings):
    limits = RunLimits.from_environment(resources=FOUR_CPUS_EIGHT_GB)
    # 7,600 MB beside the server would hold 7 runs of 1,000 MB; the 4 CPUs allow 4, a thread each.
    assert (limits.max_runs, limits.threads, limits.run_memory_mb) == (4, 1, capacity.RUN_MEMORY_MB)
    assert capacity.one_run_reason(limits, FOUR_CPUS_EIGHT_GB) is None


def test_where_memory_is_short_fewer_runs_share_the_cpus_as_threads(no_settings):
    eight_cpus_four_gb = Resources(8.0, 4 * 10**9, "a test", "a test")
    limits = RunLimits.from_environment(resources=eight_cpus_four_gb)
    assert (limits.max_runs, limits.threads) == (3, 2)  # 3,600 MB beside the server: 3 runs, 8 // 3 threads
    two_cpus_two_gib = Resources(2.0, 2 * GIB, "a test", "a test")
    limits = RunLimits.from_environment(resources=two_cpus_two_gib)
    assert (limits.max_runs, limits.threads) == (1, 2)
    assert capacity.one_run_reason(limits, two_cpus_two_gib) == (
        "this server has 2 CPUs and 2.0 GiB, room for one run of up to 1.0 GB beside the 400 MB the server "
        "keeps: one run at a time"
    )


def test_a_fraction_of_a_cpu_still_trains_one_run_with_one_thread(no_settings):
    community_cloud_small = Resources(0.078, 2_700_000_000, "cgroup v2 cpu.max (7800 100000)", "a test")
    limits = RunLimits.from_environment(resources=community_cloud_small)
    assert (limits.max_runs, limits.threads, limits.run_memory_mb) == (1, 1, capacity.RUN_MEMORY_MB)


def test_without_a_known_memory_the_cpus_alone_size_the_runs(no_settings):
    limits = RunLimits.from_environment(resources=Resources(3.0, None, "a test", "unknown"))
    assert (limits.max_runs, limits.threads, limits.run_memory_mb) == (3, 1, capacity.RUN_MEMORY_MB)


def test_settings_win_over_the_defaults_and_size_the_defaults_after_them(no_settings, monkeypatch):
    monkeypatch.setenv("LSTM_PLAYHOUSE_RUN_MEMORY_MB", "3000")
    limits = RunLimits.from_environment(resources=FOUR_CPUS_EIGHT_GB)
    assert (limits.run_memory_mb, limits.max_runs, limits.threads) == (3000, 2, 2)  # 7,600 MB // 3,000 MB
    monkeypatch.setenv("LSTM_PLAYHOUSE_MAX_RUNS", "3")
    assert RunLimits.from_environment(resources=FOUR_CPUS_EIGHT_GB).threads == 1  # 4 // 3
    monkeypatch.setenv("LSTM_PLAYHOUSE_THREADS", "2")
    monkeypatch.setenv("LSTM_PLAYHOUSE_MAX_RUNS", "1")
    limits = RunLimits.from_environment(resources=FOUR_CPUS_EIGHT_GB)
    assert (limits.max_runs, limits.threads) == (1, 2)
    assert capacity.one_run_reason(limits, FOUR_CPUS_EIGHT_GB) == "this server's settings allow one run at a time"


def test_a_quota_smaller_than_one_runs_need_cannot_train(no_settings, tmp_path):
    limits = RunLimits.from_environment(resources=TINY_QUOTA)
    assert capacity.one_run_reason(limits, TINY_QUOTA) is None  # not "one run at a time": none at all
    problem = capacity.training_problem(limits, TINY_QUOTA)
    assert problem == (
        "This server cannot train: it has 0.5 CPUs and 600 MiB, and beside the 400 MB the server keeps for itself "
        "a run would have 229 MB, less than the 310 MB any training process needs before its model and data. "
        "The Generate and Inside the LSTM pages work as usual, with the demo model or one you upload."
    )
    # The run starter and Resume refuse with the same reason (without the resources, in fewer words).
    plain = capacity.training_problem(limits)
    assert plain is not None and "a run may use 229 MB here, less than the 310 MB" in plain
    with pytest.raises(ValueError) as refused:
        runs.start_run(tmp_path, tmp_path / "v" / "runs", TINY_CONFIG, prepare(TINY_TEXT, 0), limits)
    assert str(refused.value) == plain
    assert not (tmp_path / "v").exists()  # nothing written
    stopped = run_files.create_run(tmp_path / "run", TINY_CONFIG, prepare(TINY_TEXT, 0))
    run_files.write_json(stopped / run_files.STATUS_FILE, {"state": "stopped", "step": 0})
    run = run_files.read_run(stopped)
    assert run is not None and runs.resume_problem(run, limits) == plain
    assert runs.resume_problem(run, RunLimits(threads=1)) is None  # the same run, on a host that can train


# ---- under a real cgroup v2 view of 1 CPU and 1 GiB (root, a private mount) --------------------------


CAPS_UNDER_THE_VIEW = """
    import json, os, sys
    from pathlib import Path
    import torch
    torch.set_num_threads(1)  # only to prepare the text here; the caps are read below
    from lstm_core.config import PRESETS
    from lstm_core.data.dataset import prepare_encoded
    from lstm_core.runs import control, folder
    from lstm_core.runs.admission import TokenCounts, admission_problems
    from lstm_core.runs.limits import RunLimits
    from lstm_core.text.plays_cache import encoded_plays

    class Recording:
        # Starts nothing: the runs it was given count as training, as a real runner's would.
        def __init__(self): self.started = []
        def start(self, data_root, run_folder, limits): self.started.append(run_folder)
        def training(self, data_root): return [folder.read_run(path) for path in self.started]
        def process(self, run_folder): raise AssertionError("not asked")
        def stop(self, run_folder): raise AssertionError("not asked")

    data = Path(os.environ["LSTM_PLAYHOUSE_DATA"])
    limits = RunLimits.from_environment()
    quick = PRESETS["quick"]
    plays = encoded_plays(data).select(None)
    dataset = prepare_encoded(plays, quick.min_word_freq, quick.split_fractions, name="plays")
    problems = admission_problems(quick, dataset.vocab.counts, TokenCounts.of_dataset(dataset), limits.admission())
    runner = Recording()
    control.start_run(data, data / "first-visitor", quick, dataset, limits, runner=runner)
    try:
        control.start_run(data, data / "second-visitor", quick, dataset, limits, runner=runner)
        second = "started"
    except control.CapacityError as error:
        second = str(error)
    print(json.dumps({"max_runs": limits.max_runs, "threads": limits.threads, "run_memory_mb": limits.run_memory_mb,
                      "problems": problems, "started": len(runner.started), "second": second}))
"""


@pytest.mark.slow
def test_under_one_cpu_and_one_gib_the_app_admits_one_quick_run_at_a_time_with_one_thread(tmp_path):
    command = [sys.executable, "-c", textwrap.dedent(CAPS_UNDER_THE_VIEW)]
    done = under_cgroup("100000 100000", "1073741824", command, tmp_path / "data")
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout)
    assert (found["max_runs"], found["threads"], found["problems"], found["started"]) == (1, 1, [], 1)
    assert found["run_memory_mb"] == pytest.approx(1073.741824 - capacity.SERVER_MEMORY_MB)
    assert found["second"].startswith("This server already trains 1 model(s) at once, its limit")
