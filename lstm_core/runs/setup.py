"""A training process's run folder before the first step: a new one checked, a resumed one read, both begun.

``python -m lstm_core train`` either starts a run in a new folder (``--out``, or
:func:`default_run_folder`) or continues one (``--resume RUN``: a run folder, or a checkpoint in
one). Before any text is read or model built, :func:`check_new_run_folder` refuses a folder that
cannot hold a new run, and :func:`open_resumed_run` reads what a resumed run continues from. Once
the run is admitted, :func:`begin_run` writes its record and, for a run that starts from step 0,
its baselines. The result, a :class:`RunSetup`, is everything a training process needs; under
torchrun rank 0 sends it to the others (:mod:`lstm_core.training.handshake`).
"""

from __future__ import annotations

import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lstm_core.config import Config
from lstm_core.errors import InputError
from lstm_core.runs import folder as runs

if TYPE_CHECKING:
    from lstm_core.data.dataset import Dataset
    from lstm_core.model.checkpoint import Checkpoint


@dataclass(frozen=True)
class RunSetup:
    """What a training process needs: the run's settings, its data, its folder, and the
    checkpoint it continues from (None: it starts from step 0)."""

    config: Config
    dataset: Dataset
    out: Path
    resume: Checkpoint | None


@dataclass(frozen=True)
class ResumedRun:
    """A run to continue, as ``--resume`` names it: its folder, its last checkpoint (None for a
    run created but never trained), the settings it was saved with, and its own prepared data
    (None for a checkpoint from before runs kept their data)."""

    folder: Path
    checkpoint: Checkpoint | None
    config: Config
    dataset_folder: Path | None


def default_run_folder() -> Path:
    """``runs/run-<date>-<time>-<random>``: unique even for runs started in the same second."""
    return Path("runs") / f"run-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def check_new_run_folder(out: Path, overwrite: bool) -> None:
    """Refuse, before any work, an ``--out`` that cannot hold a new run; with ``overwrite``,
    delete the run already there (its files and snapshots, nothing else in the folder)."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; give a folder for the run's checkpoints")
    if out.is_dir() and runs.is_run(out):
        if not overwrite:
            raise InputError(
                f"{out} already holds a run; continue it with --resume {out}, or replace it with --overwrite"
            )
        for name in runs.RUN_FILES:
            (out / name).unlink(missing_ok=True)
        shutil.rmtree(out / runs.SNAPSHOTS_DIR, ignore_errors=True)  # the old run's models at its evaluations
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise InputError(f"cannot write the run's files to {out}: {error.strerror or error}") from None


def resume_source(resume: str) -> tuple[Path, Path | None]:
    """``--resume`` names a run folder or a checkpoint: (its run folder, the checkpoint or None)."""
    path = Path(resume)
    if path.is_dir():
        last = path / runs.LAST_CHECKPOINT
        if last.is_file():
            return path, last
        if (path / runs.RUN_FILE).is_file():
            return path, None  # created but never trained: it starts from step 0
        raise InputError(f"{path} holds no run to resume (no {runs.LAST_CHECKPOINT} or {runs.RUN_FILE})")
    if path.is_file():
        return path.parent, path
    raise InputError(f"--resume {resume}: no such run folder or checkpoint")


def open_resumed_run(resume: str) -> ResumedRun:
    """The run ``--resume`` names, read: its checkpoint's settings, else its record's."""
    from lstm_core.model.checkpoint import load_checkpoint

    folder, checkpoint_path = resume_source(resume)
    checkpoint = load_checkpoint(checkpoint_path) if checkpoint_path is not None else None
    record = runs.read_json(folder / runs.RUN_FILE)
    if checkpoint is not None:
        config = checkpoint.config
    elif record is not None:
        config = Config.from_dict(record.get("config", {}))
    else:
        raise InputError(f"{folder} has no {runs.RUN_FILE} to start the run from")
    saved_data = folder / runs.DATASET_DIR
    dataset_folder = saved_data if (saved_data / "meta.json").is_file() else None
    return ResumedRun(folder, checkpoint, config, dataset_folder)


def begin_run(setup: RunSetup) -> None:
    """Make ``setup.out`` the run's folder, once the run is admitted: its record and data where it
    has none yet, and its baselines when it starts from step 0 (not on a resume)."""
    if not (setup.out / runs.RUN_FILE).is_file():
        runs.create_run(setup.out, setup.config, setup.dataset)
    if setup.resume is None and not (setup.out / runs.BASELINES_FILE).is_file():
        write_baselines(setup.out, setup.dataset)


def write_baselines(out: Path, dataset: Dataset) -> None:
    """The baselines' validation perplexities on the run's own data, for the Train page's chart and
    its sentence on where the run stands. On all the plays it takes 0.5 to 1 s and about 140 MB
    for a moment (the 5-gram's counts), so it is done once, before the model is built; a
    validation text too short to score gets none (the trainer then says why it cannot train)."""
    from lstm_core.evaluation.baselines import baseline_perplexities

    try:
        baselines = baseline_perplexities(dataset)
    except InputError:
        return
    runs.write_baselines(out, baselines)
