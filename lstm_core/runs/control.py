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

* at most ``max_runs`` runs train at once on the server and ``runs_per_visitor`` per visitor
  (a file lock makes the check and the start one step, across tabs and processes);
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

import contextlib
import fcntl
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lstm_core.config import Config
from lstm_core.runs import folder as runs
from lstm_core.runs.admission import TokenCounts, admission_problems
from lstm_core.runs.capacity import training_problem
from lstm_core.runs.limits import RunLimits
from lstm_core.runs.local import LocalRunner
from lstm_core.runs.runner import Runner
from lstm_core.runs.sweep import sweep

if TYPE_CHECKING:  # the server imports this module for its caps; torch waits until a run is admitted
    from lstm_core.data.dataset import Dataset


class CapacityError(RuntimeError):
    """The server, or this visitor, already trains as many models as allowed."""


def default_runner() -> Runner:
    """The runner this server trains its runs with: the local child process, the one there is."""
    return LocalRunner()


@contextlib.contextmanager
def _server_lock(data_root: Path) -> Iterator[None]:
    """One start at a time across the server's threads and processes (two tabs clicking Start)."""
    data_root.mkdir(parents=True, exist_ok=True)
    with (data_root / "runs.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def new_run_id() -> str:
    """``<date>-<time>-<random>``: sorts by start time, and cannot be guessed or collide."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(4)}"


def active_runs(data_root: Path, runner: Runner | None = None) -> list[runs.RunSummary]:
    """The runs training on this server now (all visitors)."""
    return (runner or default_runner()).training(data_root)


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
    """Admit, create and start a new run for a visitor; raise CapacityError or ValueError if refused.

    Nothing is written and no process started unless every check passes.
    """
    runner = runner or default_runner()
    host_problem = training_problem(limits)
    if host_problem:
        raise ValueError(host_problem)
    problems = admission_problems(config, dataset.vocab.counts, TokenCounts.of_dataset(dataset), limits.admission())
    if problems:
        raise ValueError(" ".join(problems))
    sweep(data_root, limits)
    with _server_lock(data_root):
        _check_capacity(data_root, visitor_runs, limits, runner)
        folder = visitor_runs / new_run_id()
        runs.create_run(folder, config, dataset)
        runner.start(data_root, folder, limits)
    summary = runs.read_run(folder)
    assert summary is not None, "a run folder just created must read back"
    return summary


def resume_problem(run: runs.RunSummary, limits: RunLimits) -> str | None:
    """Why ``run`` cannot be resumed here (None if it can)."""
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
    """Start training ``run`` again on its own folder: its config, its data, its last checkpoint."""
    runner = runner or default_runner()
    problem = resume_problem(run, limits)
    if problem:
        raise ValueError(problem)
    with _server_lock(data_root):
        _check_capacity(data_root, run.path.parent, limits, runner)
        (run.path / runs.EXIT_FILE).unlink(missing_ok=True)
        runs.write_json(run.path / runs.STATUS_FILE, {**_status(run.path), "state": "starting", "message": ""})
        runner.start(data_root, run.path, limits)


def _status(folder: Path) -> dict[str, Any]:
    return runs.read_json(folder / runs.STATUS_FILE) or {}


def stop_run(run: runs.RunSummary, runner: Runner | None = None) -> None:
    """Ask the run's training to save and stop (it does within a step)."""
    (runner or default_runner()).stop(run.path)
