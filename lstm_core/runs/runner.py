"""What runs a run folder's training: the one interface the server starts, watches and stops runs through.

A runner trains a prepared run folder (:func:`lstm_core.runs.folder.create_run`) with the command
line's own trainer, ``python -m lstm_core train --resume FOLDER`` under the server's caps
(:func:`lstm_core.runs.local.train_command`), wherever it runs that command. The service functions
(:mod:`lstm_core.runs.control`) admit a run, then hand it to a runner; they never start or signal a
process themselves. Two runners fit behind the same four methods: the local child process
(:class:`lstm_core.runs.local.LocalRunner`, the default) and a Ray cluster's Jobs API
(:class:`lstm_core.runs.cluster.RayRunner`). Whichever started a run, any server that shares the
data folder reads where it stands (:mod:`lstm_core.runs.liveness`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from lstm_core.runs.folder import RunSummary
    from lstm_core.runs.limits import RunLimits


class RunnerUnavailable(RuntimeError):
    """The runner cannot take a run now (the training cluster does not answer): nothing was started."""


@dataclass(frozen=True)
class ProcessState:
    """A run's training process as its runner sees it.

    ``alive`` while it trains (or has ended and its end is not recorded yet); ``returncode`` is how
    it ended once that is recorded (negative: killed by that signal), None before then or when
    the runner never started one for the folder. ``answered`` is False when the runner could not
    tell (the cluster did not answer): then ``alive`` says nothing, and ``detail`` says why.
    ``lost`` is True when the runner answered that it knows no such job (a cluster restarted
    since, with its jobs' records).
    """

    alive: bool
    returncode: int | None = None
    answered: bool = True
    lost: bool = False
    detail: str = ""


class Runner(Protocol):
    """Starts, watches and stops the training of run folders."""

    def start(self, data_root: Path, folder: Path, limits: RunLimits) -> None:
        """Start training ``folder`` under ``limits``; return once it is started (not trained).
        Raises :class:`RunnerUnavailable` when it cannot, having started nothing."""
        ...

    def training(self, data_root: Path) -> list[RunSummary]:
        """The runs training now, every visitor's and every server's (what the caps count)."""
        ...

    def process(self, folder: Path) -> ProcessState:
        """Whether ``folder``'s training process lives, and how it ended."""
        ...

    def stop(self, folder: Path) -> None:
        """Ask ``folder``'s training to save and stop (it does within a step)."""
        ...
