"""Whether a run may start (lstm_core/runs/admission.py), and that every caller asks the same function.

Each rule is checked on both sides of its line: it refuses what it must, admits what it may, and
its sentence names the setting to change. Then one config too large for its text is refused by
the command line, the app's run starter and the Train page with the same sentence.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from app import state
from lstm_core.cli.main import main
from lstm_core.config import Config
from lstm_core.data.dataset import prepare
from lstm_core.model.memory import estimate_memory
from lstm_core.model.network import count_parameters
from lstm_core.runs import admission
from lstm_core.runs import control as runs
from lstm_core.runs import folder as run_files
from lstm_core.runs.admission import AdmissionLimits, TokenCounts, admission_problems, words_problem
from lstm_core.runs.limits import RunLimits
from lstm_core.runs.local import LocalRunner
from lstm_core.runs.runner import ProcessState
from lstm_core.system import processes
from lstm_core.system.resources import Resources
from lstm_core.text.corpus import bundled_plays
from tests.conftest import TINY_TEXT

ENTRY = str(Path(__file__).resolve().parent.parent / "streamlit_app.py")
SMALL = Config(rnn_size=16, batch_size=4, training_seq_len=8, epochs=1, eval_every=0, output_layer="full")
COUNTS = [50, 20, 10, 5, 5, 3, 3, 2, 1, 1]  # a vocabulary of 10 words, in id order
PLENTY = TokenCounts(train=10_000, total=12_000)
NO_LIMITS = AdmissionLimits(memory_limit=10**12, memory_limit_name="a terabyte")


def estimate(config: Config, tokens: int = PLENTY.total) -> int:
    return estimate_memory(config, COUNTS, tokens, count_parameters(config, len(COUNTS), COUNTS)).total


# ---- each rule -------------------------------------------------------------------------------------


def test_a_config_within_every_limit_is_admitted():
    assert admission_problems(SMALL, COUNTS, PLENTY, NO_LIMITS) == []


def test_the_training_words_must_fill_one_window_of_the_batch():
    needed = 4 * (8 + 1)
    assert admission_problems(SMALL, COUNTS, TokenCounts(train=needed, total=needed + 10), NO_LIMITS) == []
    (problem,) = admission_problems(SMALL, COUNTS, TokenCounts(train=needed - 1, total=needed + 10), NO_LIMITS)
    assert problem == (
        "The training part of this text has 35 words; batch_size 4 x (training_seq_len 8 + 1) needs at least 36 words. "
        "Lower the batch size or sequence length, or choose more text."
    )


def test_the_page_counts_the_training_words_the_dataset_will_have():
    for total in (1_000, 1_001, 1_015, 7, 58_333):
        dataset = prepare([f"w{i % 50}" for i in range(total)], 0, SMALL.split_fractions)
        assert TokenCounts.of_split(total, SMALL.split_fractions) == TokenCounts.of_dataset(dataset)


def test_a_parameter_cap_refuses_a_larger_model_and_names_what_to_shrink():
    parameters = count_parameters(SMALL, len(COUNTS), COUNTS)
    at_cap = AdmissionLimits(memory_limit=10**12, max_parameters=parameters)
    assert admission_problems(SMALL, COUNTS, PLENTY, at_cap) == []
    under = AdmissionLimits(memory_limit=10**12, max_parameters=parameters - 1)
    (problem,) = admission_problems(SMALL, COUNTS, PLENTY, under)
    assert f"This model would have {parameters:,} parameters; this server allows {parameters - 1:,}." in problem
    assert "Choose a smaller rnn_size, embedding_size or fewer layers" in problem


def test_the_memory_estimate_must_fit_the_limit_and_the_refusal_says_what_to_change():
    needed = estimate(SMALL)
    fits = AdmissionLimits(memory_limit=needed, memory_limit_name="the limit given by --memory-limit-mb")
    assert admission_problems(SMALL, COUNTS, PLENTY, fits) == []
    short = AdmissionLimits(memory_limit=needed - 1, memory_limit_name="the limit given by --memory-limit-mb")
    (problem,) = admission_problems(SMALL, COUNTS, PLENTY, short)
    assert problem.startswith("This run would need about ")
    assert "; the limit given by --memory-limit-mb is " in problem
    assert "Choose the adaptive output layer, a smaller batch_size or training_seq_len" in problem
    assert problem.endswith("a larger min_word_freq (a smaller vocabulary).")


def machine(monkeypatch, memory_bytes: int | None) -> None:
    """Make this machine give the process ``memory_bytes`` (None: the system does not say)."""
    found = Resources(2.0, memory_bytes, "a test", "a test")
    monkeypatch.setattr(admission, "available_resources", lambda: found)


def test_without_a_limit_the_machines_memory_is_shared_by_its_processes(monkeypatch):
    needed = estimate(SMALL)
    machine(monkeypatch, needed + needed // 2)
    assert admission_problems(SMALL, COUNTS, PLENTY, AdmissionLimits()) == []
    (problem,) = admission_problems(SMALL, COUNTS, PLENTY, AdmissionLimits(processes=2, processes_here=2))
    assert "this machine's memory shared by 2 processes is" in problem  # half of it each, below the estimate
    machine(monkeypatch, needed - 1)
    (problem,) = admission_problems(SMALL, COUNTS, PLENTY, AdmissionLimits())
    assert "; this machine's memory is " in problem
    machine(monkeypatch, None)  # a system that does not say
    assert admission_problems(SMALL, COUNTS, PLENTY, AdmissionLimits()) == []


def test_under_torchrun_the_batch_must_divide_among_the_processes():
    limits = AdmissionLimits(memory_limit=10**12, processes=3)
    (problem,) = admission_problems(SMALL, COUNTS, PLENTY, limits)
    assert problem.startswith("batch_size 4 does not divide among 3 processes")
    assert "use a multiple of 3 (e.g. 3 or 6)" in problem
    assert admission_problems(SMALL.replace(batch_size=6), COUNTS, PLENTY, limits) == []


def test_under_torchrun_each_process_is_estimated_with_its_share_of_the_batch():
    big = SMALL.replace(batch_size=64, training_seq_len=64)
    share = estimate(big.replace(batch_size=16))
    assert share < estimate(big)
    assert admission_problems(big, COUNTS, PLENTY, AdmissionLimits(memory_limit=share, processes=4)) == []
    assert admission_problems(big, COUNTS, PLENTY, AdmissionLimits(memory_limit=share, processes=1))


def test_under_torchrun_the_device_must_be_one_each_process_can_use():
    limits = AdmissionLimits(memory_limit=10**12, processes=2)
    (problem,) = admission_problems(SMALL.replace(device="cuda:1"), COUNTS, PLENTY, limits)
    assert "each one uses the GPU of its local rank; use --device cuda (or auto)" in problem
    assert admission_problems(SMALL.replace(device="cpu"), COUNTS, PLENTY, limits) == []


def test_every_problem_is_listed_in_one_answer():
    limits = AdmissionLimits(memory_limit=1, max_parameters=1, processes=3)
    problems = admission_problems(SMALL, COUNTS, TokenCounts(train=3, total=3), limits)
    assert [problem.split()[:3] for problem in problems] == [
        ["The", "training", "part"],
        ["batch_size", "4", "does"],
        ["This", "model", "would"],
        ["This", "run", "would"],
    ]


def test_a_servers_caps_admit_against_its_parameter_cap_and_memory_per_run():
    limits = RunLimits(max_parameters=1234, run_memory_mb=250).admission()
    assert (limits.max_parameters, limits.memory()) == (1234, (250_000_000, "this server's limit per run"))


# ---- the runner ----------------------------------------------------------------------------------


class RecordingRunner:
    """A runner that trains nothing and remembers what it was asked."""

    def __init__(self) -> None:
        self.started: list[Path] = []
        self.stopped: list[Path] = []

    def start(self, data_root: Path, folder: Path, limits: RunLimits) -> None:
        self.started.append(folder)

    def training(self, data_root: Path) -> list[run_files.RunSummary]:
        return []

    def process(self, folder: Path) -> ProcessState:
        return ProcessState(alive=folder in self.started and folder not in self.stopped)

    def stop(self, folder: Path) -> None:
        self.stopped.append(folder)


def test_an_admitted_run_is_handed_to_the_runner_and_a_refused_one_is_not(tmp_path):
    runner = RecordingRunner()
    dataset = prepare(TINY_TEXT, 0, (0.8, 0.1, 0.1), name="sonnet")
    visitor = tmp_path / "v" / "runs"
    run = runs.start_run(tmp_path, visitor, SMALL, dataset, RunLimits(), runner=runner)
    assert runner.started == [run.path] and run.state == "starting"
    runs.stop_run(run, runner=runner)
    assert runner.stopped == [run.path] and not (run.path / run_files.STOP_FILE).exists()
    with pytest.raises(ValueError, match="needs at least"):
        runs.start_run(tmp_path, visitor, SMALL.replace(batch_size=400), dataset, RunLimits(), runner=runner)
    assert runner.started == [run.path] and len(list(visitor.iterdir())) == 1


def test_the_local_runner_reads_whether_its_process_lives_and_how_it_ended(tmp_path):
    import subprocess
    import sys

    runner = LocalRunner()
    assert runner.process(tmp_path) == ProcessState(alive=False)  # it never started one here
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        record = {"pid": child.pid, "pid_start": processes.process_start_time(child.pid)}
        run_files.write_json(tmp_path / run_files.PROCESS_FILE, record)
        assert runner.process(tmp_path) == ProcessState(alive=True)
    finally:
        child.kill()
        child.wait()
    assert runner.process(tmp_path) == ProcessState(alive=False)  # gone, and nobody recorded how
    run_files.write_json(tmp_path / run_files.EXIT_FILE, {"returncode": -9})
    assert runner.process(tmp_path) == ProcessState(alive=False, returncode=-9)


# ---- one sentence from every caller -------------------------------------------------------------------


@pytest.fixture
def data(monkeypatch, tmp_path):
    folder = tmp_path / "data"
    monkeypatch.setenv("LSTM_PLAYHOUSE_DATA", str(folder))
    monkeypatch.setenv("LSTM_PLAYHOUSE_THREADS", "1")
    st.cache_resource.clear()
    st.cache_data.clear()
    return folder


def test_a_config_too_large_for_its_text_is_refused_by_every_caller_with_the_same_sentence(data, tmp_path, capsys):
    # The Train page, on Macbeth, with a batch that needs 256 x 201 = 51,456 training words.
    at = AppTest.from_file(ENTRY, default_timeout=60).run()
    at.session_state[state.CORPUS_PLAYS] = ["macbeth"]
    at.switch_page("app/pages/train.py")
    settings = {**at.session_state[state.CONFIG], "batch_size": 256, "training_seq_len": 200}
    at.session_state[state.CONFIG] = settings
    at.run()
    assert not at.exception
    config = Config.from_dict(settings)
    dataset = prepare(bundled_plays(["macbeth"]).text, config.min_word_freq, config.split_fractions)
    sentence = words_problem(config, dataset.train.numel())
    assert sentence is not None and "needs at least 51,456" in sentence
    assert sentence in [error.value for error in at.error]
    # The app's run starter, on the same text.
    with pytest.raises(ValueError) as refused:
        runs.start_run(data, data / "v" / "runs", config, dataset, RunLimits())
    assert sentence in str(refused.value)
    assert not (data / "v").exists()
    # The command line, with the same settings.
    settings_file = tmp_path / "config.json"
    settings_file.write_text(json.dumps(config.to_dict()))
    flags = ["--config", str(settings_file), "--plays", "macbeth", "--out", str(tmp_path / "run"), "--threads", "1"]
    capsys.readouterr()
    assert main(["train", *flags]) == 2
    # (Streamlit may log a line of its own to stderr when an earlier test left its caches outside a runtime.)
    assert f"error: {sentence}" in capsys.readouterr().err.splitlines()
    assert not run_files.is_run(tmp_path / "run")
    assert os.listdir(tmp_path / "run") == []  # checked writable, then nothing written
