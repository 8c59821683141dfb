"""Training runs for a shared server: admit, start, resume and stop them; each a folder and a process.

The app never trains in its own process. It prepares a run folder (:func:`lstm_core.runs.folder.create_run`:
the config and the prepared data) and a runner (:mod:`lstm_core.runs.runner`) trains it with
``python -m lstm_core train --resume RUN``, the same trainer the command line runs. The pages only
read the folder. So:

* a reload, a second tab or a server restart find the same run (the folder is the truth);
* a crash, a memory kill or a runaway run ends that run's process only, and every run has its
  own random generator;
* Stop writes the folder's ``stop`` file; the process saves and exits within a step.

Hosted-demo safety, all decided before anything is allocated (:func:`start_run`):

* at most ``max_runs`` runs train at once and ``runs_per_visitor`` per visitor, counted over
  every web server that shares the data folder (a lock in that folder makes the check and the
  start one step, across tabs, processes and servers: :mod:`lstm_core.runs.lock`);
* none starts where a run may use less memory than any training process needs
  (:func:`lstm_core.runs.capacity.training_problem`: the host cannot train);
* a run is admitted by :func:`lstm_core.runs.admission.admission_problems` (the command line's and
  the Train page's rules too): its parameters under the cap, its memory estimate under
  ``run_memory_mb``; the process gets that limit too (a watchdog and an address-space limit),
  so an underestimate ends the run, not the server;
* the process runs ``nice``-r than the server (``nice``, 10 by default), so visitors' pages come first;
* its training time is capped across resumes (``max_minutes``), and it stops by itself when no
  page has looked at it for ``idle_minutes``;
* old runs are deleted after ``keep_days``, and the oldest first when all runs together pass
  ``disk_mb`` (:func:`lstm_core.runs.sweep.sweep`).

Nothing here imports Streamlit: pages own the UI, this module owns the runs' lifecycle.
"""

from __future__ import annotations

import secrets
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lstm_core.config import Config
from lstm_core.runs import folder as runs
from lstm_core.runs.admission import TokenCounts, admission_problems
from lstm_core.runs.capacity import training_problem
from lstm_core.runs.limits import RunLimits, RunnerSettings
from lstm_core.runs.local import LocalRunner
from lstm_core.runs.lock import runs_lock
from lstm_core.runs.runner import Runner, RunnerUnavailable
from lstm_core.runs.sweep import sweep

if TYPE_CHECKING:  # the server imports this module for its caps; torch waits until a run is admitted
    from lstm_core.data.dataset import Dataset


class CapacityError(RuntimeError):
    """The server, or this visitor, already trains as many models as allowed."""


def make_runner(settings: RunnerSettings) -> Runner:
    """The runner ``settings`` choose: the local child process, or jobs on a Ray cluster (which
    imports Ray, so only a server set to use it needs it installed)."""
    if settings.kind == "ray":
        assert settings.ray_address is not None, "RunnerSettings checks that ray has an address"
        from lstm_core.runs.cluster import RayRunner

        return RayRunner(settings.ray_address)
    return LocalRunner()


def default_runner() -> Runner:
    """The runner the environment chooses (``LSTM_PLAYHOUSE_RUNNER``; local when unset). The app
    passes its own, chosen with its secrets file too."""
    return make_runner(RunnerSettings.from_environment())


def new_run_id() -> str:
    """``<date>-<time>-<random>``: sorts by start time, and cannot be guessed or collide."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(4)}"


def active_runs(data_root: Path, runner: Runner | None = None) -> list[runs.RunSummary]:
    """The runs training now (all visitors, every server sharing ``data_root``)."""
    return (runner or LocalRunner()).training(data_root)


def _check_capacity(data_root: Path, visitor_runs: Path, limits: RunLimits, runner: Runner) -> None:
    active = runner.training(data_root)
    mine = [run for run in active if run.path.parent == visitor_runs]
    if len(mine) >= limits.runs_per_visitor:
        raise CapacityError(
            "You already have a run training (in this tab or another): stop it, or wait for it to end, "
            "before you start another."
        )
    if len(active) >= limits.max_runs:
        raise CapacityError(
            f"This server already trains {len(active)} model(s) at once, its limit; please try again in a few "
            "minutes (or run the app on your own machine: see the README)."
        )


def start_run(
    data_root: Path,
    visitor_runs: Path,
    config: Config,
    dataset: Dataset,
    limits: RunLimits,
    runner: Runner | None = None,
) -> runs.RunSummary:
    """Admit, create and start a new run for a visitor; raise CapacityError or ValueError if refused,
    RunnerUnavailable if the runner cannot take it (the training cluster does not answer).

    Nothing is kept and no process started unless every check passes and the runner takes it.
    """
    runner = runner or default_runner()
    host_problem = training_problem(limits)
    if host_problem:
        raise ValueError(host_problem)
    problems = admission_problems(config, dataset.vocab.counts, TokenCounts.of_dataset(dataset), limits.admission())
    if problems:
        raise ValueError(" ".join(problems))
    sweep(data_root, limits)
    with runs_lock(data_root):
        _check_capacity(data_root, visitor_runs, limits, runner)
        folder = visitor_runs / new_run_id()
        runs.create_run(folder, config, dataset)
        try:
            runner.start(data_root, folder, limits)
        except RunnerUnavailable:
            shutil.rmtree(folder, ignore_errors=True)
            raise
    summary = runs.read_run(folder)
    assert summary is not None, "a run folder just created must read back"
    return summary


def resume_problem(run: runs.RunSummary, limits: RunLimits) -> str | None:
    """Why ``run`` cannot be resumed here (None if it can)."""
    if run.state == "unreachable":
        return (
            "The training cluster is not answering, so nobody can tell whether this run still trains: "
            "it can be resumed once the cluster answers."
        )
    if run.active:
        return "This run is still training."
    host_problem = training_problem(limits)
    if host_problem:
        return host_problem
    if not run.has_last and run.step > 0:
        return "This run has no checkpoint to resume from."
    if run.state == "finished":
        return "This run has finished all its epochs."
    if run.elapsed_s >= limits.max_minutes * 60:
        return f"This run has trained for {limits.max_minutes:g} minutes in all, the most this server allows per run."
    return None


def resume_run(data_root: Path, run: runs.RunSummary, limits: RunLimits, runner: Runner | None = None) -> None:
    """Start training ``run`` again on its own folder: its config, its data, its last checkpoint.

    The run is read again inside the lock, so that two servers (or tabs) resuming it at once start
    it once: the second finds it starting.
    """
    runner = runner or default_runner()
    problem = resume_problem(run, limits)
    if problem:
        raise ValueError(problem)
    with runs_lock(data_root):
        now = runs.read_run(run.path)
        problem = resume_problem(now, limits) if now is not None else "That run is gone."
        if problem:
            raise ValueError(problem)
        _check_capacity(data_root, run.path.parent, limits, runner)
        before = _status(run.path)
        (run.path / runs.EXIT_FILE).unlink(missing_ok=True)
        runs.write_json(run.path / runs.STATUS_FILE, {**before, "state": "starting", "message": ""})
        try:
            runner.start(data_root, run.path, limits)
        except RunnerUnavailable:
            runs.write_json(run.path / runs.STATUS_FILE, before)  # as it was: still resumable
            raise


def _status(folder: Path) -> dict[str, Any]:
    return runs.read_json(folder / runs.STATUS_FILE) or {}


def stop_run(run: runs.RunSummary, runner: Runner | None = None) -> None:
    """Ask the run's training to save and stop (it does within a step)."""
    (runner or default_runner()).stop(run.path)
