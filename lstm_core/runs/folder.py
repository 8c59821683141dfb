"""A training run on disk: one folder that says everything about the run, to anyone who reads it.

The command line writes it and the app only reads it, so a page reload, a second tab, a server
restart or a crashed training process all find the same truth::

    RUN/
      run.json       what was asked for: the config, the data, when (written once, at creation)
      dataset/       the prepared data (Dataset.save): a resume trains on exactly the same ids
      status.json    where the run stands: state, process id and host, step, time (rewritten
                     atomically, every second while its process lives)
      events.jsonl   the trainer's reports, one JSON object a line (steps thinned to a few a second)
      last.pt        everything needed to resume: at every evaluation, every save_every steps, at the end
      best.pt        the weights with the best validation loss so far (model only)
      baselines.json the n-gram baselines' validation perplexities on this run's data (written once,
                     by the training process when the run starts from step 0; see lstm_core/evaluation/baselines.py)
      snapshots/     step-<7-digit step>.pt: the model (float16, model only) at evaluations, at most
                     MAX_SNAPSHOTS of them, thinned as the run goes on (see thin_snapshots)
      process.json   what trains it, written by whoever started it (the app): the runner, the host,
                     and the process id (local) or the cluster's address and job id (Ray)
      exit.json      how a local process ended, written by the server that waited for it
      log.txt        the process's own output, when the app started it
      stop           exists once a stop was asked for; the process sees it within a step
      heartbeat      touched by the pages that show the run: a run started with an idle limit
                     stops when nobody has looked at it for that long

The training process keeps ``status.json`` and ``events.jsonl`` current through
:mod:`lstm_core.runs.recording`; whether the run still trains is :mod:`lstm_core.runs.liveness`'s
to judge (a local pid, another host's fresh status, or a Ray job's status). Nothing here imports a
UI or torch (only :func:`read_baselines` brings in torch, when it is called), so reading a run is
cheap.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lstm_core.errors import InputError
from lstm_core.files import atomic_write_text
from lstm_core.runs.liveness import ACTIVE_STATES, State, effective_state, number
from lstm_core.runs.liveness import EXIT_OUT_OF_MEMORY as EXIT_OUT_OF_MEMORY
from lstm_core.runs.liveness import STARTUP_GRACE_S as STARTUP_GRACE_S

if TYPE_CHECKING:
    from lstm_core.config import Config
    from lstm_core.data.dataset import Dataset
    from lstm_core.evaluation.baselines import Baseline

RUN_FORMAT = "lstm-playhouse-run"
RUN_FILE = "run.json"
STATUS_FILE = "status.json"
EVENTS_FILE = "events.jsonl"
PROCESS_FILE = "process.json"
EXIT_FILE = "exit.json"
LOG_FILE = "log.txt"
STOP_FILE = "stop"
HEARTBEAT_FILE = "heartbeat"
DATASET_DIR = "dataset"
LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"
BASELINES_FILE = "baselines.json"
SNAPSHOTS_DIR = "snapshots"
MAX_SNAPSHOTS = 8
"""Snapshots a run keeps. A snapshot is the model alone in float16, 2 bytes a parameter plus the
vocabulary and the history: on all the plays 4.0 MB for the Quick preset (1.9 M parameters) and
11.6 MB for Best (5.7 M). Eight add about 32 MB to a Quick run and 92 MB to a Best run, beside
their ``last.pt`` (weights and Adam's two moments in float32: 23 and 69 MB), ``best.pt`` (8 and
23 MB) and ``dataset/`` (3 MB): about 67 MB a Quick run and 190 MB a Best run in all, so the app's
disk cap (2 GB for all visitors) holds about ten Best runs or thirty Quick ones."""
RUN_FILES = (
    RUN_FILE,
    STATUS_FILE,
    EVENTS_FILE,
    PROCESS_FILE,
    EXIT_FILE,
    LOG_FILE,
    STOP_FILE,
    HEARTBEAT_FILE,
    LAST_CHECKPOINT,
    BEST_CHECKPOINT,
    BASELINES_FILE,
)
"""Every file a run folder may hold (besides ``dataset/`` and ``snapshots/``)."""


def is_run(folder: Path) -> bool:
    """Whether ``folder`` already holds a run (or the checkpoints of one)."""
    return any((folder / name).exists() for name in (RUN_FILE, LAST_CHECKPOINT, BEST_CHECKPOINT))


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``, or None if it is missing or unreadable (a reader never fails)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(data, ensure_ascii=False, allow_nan=True))


def create_run(folder: Path | str, config: Config, dataset: Dataset, *, created: float | None = None) -> Path:
    """Make ``folder`` a run that has not started yet: its data, its record, status ``starting``.

    ``run.json`` is written last, so a folder that has one is complete. Training it is
    ``python -m lstm_core train --resume FOLDER`` (which starts from step 0 when there is no
    checkpoint yet).
    """
    from lstm_core.data.batching import steps_per_epoch  # torch, which a run's data has loaded already

    folder = Path(folder)
    dataset.save(folder / DATASET_DIR)
    created = time.time() if created is None else created
    # The steps it will take, known before its process starts (a run planned by the clock learns
    # them as it trains).
    planned = (
        0
        if config.train_minutes
        else config.epochs * steps_per_epoch(dataset.train.numel(), config.batch_size, config.training_seq_len)
    )
    write_json(folder / STATUS_FILE, {"state": "starting", "updated": created, "message": "", "total_steps": planned})
    description = {
        "name": dataset.name,
        "vocab_size": len(dataset.vocab),
        "min_word_freq": dataset.vocab.min_word_freq,
        "train_tokens": dataset.train.numel(),
        "valid_tokens": dataset.valid.numel(),
        "test_tokens": dataset.test.numel(),
    }
    record = {"format": RUN_FORMAT, "version": 1, "created": created, "config": config.to_dict()}
    write_json(folder / RUN_FILE, {**record, "dataset": description})
    return folder


# ---- reading a run ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSummary:
    """A run as a page shows it, read from its folder."""

    id: str
    path: Path
    created: float
    config: dict[str, Any]
    dataset: dict[str, Any]
    state: State
    message: str
    step: int
    total_steps: int
    elapsed_s: float
    best_perplexity: float | None
    last_perplexity: float | None
    has_last: bool
    has_best: bool
    pid: int | None

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def ended_unexpectedly(self) -> bool:
        return self.state in ("crashed", "out_of_memory", "failed")

    @property
    def checkpoint(self) -> Path | None:
        """The checkpoint to sample from: the best one, else the last one."""
        for name, present in ((BEST_CHECKPOINT, self.has_best), (LAST_CHECKPOINT, self.has_last)):
            if present:
                return self.path / name
        return None


def _effective_state(folder: Path, status: dict[str, Any]) -> tuple[State, str, int | None]:
    """The state a reader should believe (:func:`lstm_core.runs.liveness.effective_state`)."""
    if status.get("state", "starting") not in ACTIVE_STATES:
        return effective_state(status, {}, None)  # it says it ended: no process to ask about
    return effective_state(status, read_json(folder / PROCESS_FILE) or {}, read_json(folder / EXIT_FILE))


def read_run(folder: Path | str) -> RunSummary | None:
    """The run in ``folder``, or None if there is none (or its record is unreadable)."""
    folder = Path(folder)
    record = read_json(folder / RUN_FILE)
    if record is None or record.get("format") != RUN_FORMAT:
        return None
    status = read_json(folder / STATUS_FILE) or {"state": "starting", "updated": record.get("created")}
    state, message, pid = _effective_state(folder, status)
    config = record["config"] if isinstance(record.get("config"), dict) else {}
    dataset = record["dataset"] if isinstance(record.get("dataset"), dict) else {}
    best, last = status.get("best_perplexity"), status.get("last_perplexity")
    return RunSummary(
        id=folder.name,
        path=folder,
        created=number(record.get("created")),
        config=config,
        dataset=dataset,
        state=state,
        message=message,
        step=int(number(status.get("step"))),
        total_steps=int(number(status.get("total_steps"))),
        elapsed_s=number(status.get("elapsed_s")),
        best_perplexity=number(best) if best is not None else None,
        last_perplexity=number(last) if last is not None else None,
        has_last=(folder / LAST_CHECKPOINT).is_file(),
        has_best=(folder / BEST_CHECKPOINT).is_file(),
        pid=pid,
    )


def list_runs(folder: Path | str) -> list[RunSummary]:
    """Every run directly inside ``folder``, newest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    runs = [run for child in folder.iterdir() if child.is_dir() and (run := read_run(child)) is not None]
    return sorted(runs, key=lambda run: (run.created, run.id), reverse=True)


# ---- baselines and snapshots -------------------------------------------------------------------


def write_baselines(folder: Path | str, baselines: Sequence[Baseline]) -> None:
    """Write the run's baselines (:func:`lstm_core.evaluation.baselines.baseline_perplexities`) as a JSON list."""
    atomic_write_text(Path(folder) / BASELINES_FILE, json.dumps([baseline.to_dict() for baseline in baselines]))


def read_baselines(folder: Path | str) -> list[Baseline]:
    """The run's baselines, lowest order first; [] when the file is missing or unreadable.

    Missing is normal: a run from before baselines were kept, or one whose process has not
    started yet. Only this reader imports :mod:`lstm_core.evaluation.baselines` (and with it torch).
    """
    from lstm_core.evaluation.baselines import Baseline

    try:
        data = json.loads((Path(folder) / BASELINES_FILE).read_text(encoding="utf-8"))
        baselines = [Baseline.from_dict(item) for item in data] if isinstance(data, list) else []
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, InputError):
        return []
    return sorted(baselines, key=lambda baseline: baseline.order)


_SNAPSHOT_NAME = re.compile(r"step-(\d{7,})\.pt")


def snapshot_path(folder: Path | str, step: int) -> Path:
    """Where the run in ``folder`` keeps its snapshot of ``step``: ``snapshots/step-0001200.pt``."""
    return Path(folder) / SNAPSHOTS_DIR / f"step-{step:07d}.pt"


def list_snapshots(folder: Path | str) -> list[tuple[int, Path]]:
    """``(step, path)`` of every snapshot of the run in ``folder``, by step ([] if it has none).

    Each is a model-only float16 checkpoint that :func:`lstm_core.model.checkpoint.load_checkpoint`
    reads like any model file. A half-written one (under a temporary name) is not listed.
    """
    directory = Path(folder) / SNAPSHOTS_DIR
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    found = [(int(match[1]), directory / name) for name in names if (match := _SNAPSHOT_NAME.fullmatch(name))]
    return sorted(found)


def thin_snapshots(steps: Sequence[int], limit: int = MAX_SNAPSHOTS) -> list[int]:
    """The snapshot steps to keep of ``steps``: at most ``limit``, spread over the whole run.

    The rule: the first and the newest are always kept. While there are more than ``limit``,
    drop the one (not the first or the newest) whose two neighbours are closest together in
    steps, i.e. the one whose loss leaves the smallest hole; of equals, the oldest. Called after
    every new snapshot, it drops one at a time, and what is left stays spread over the run: no
    gap between two kept snapshots is wider than twice the mean gap (``(newest - first) /
    (limit - 1)``), unless two evaluations were that far apart themselves. (Before a removal
    ``limit`` candidates' merged gaps add up to at most twice the span, so the smallest is at most
    ``2 * span / (limit - 1)``, and the span only grows.) With evaluations every 100 steps and
    a limit of 8: after 10 evaluations 100, 300, 500, 600, 700, 800, 900, 1000; after 60,
    100, 900, 1900, 2700, 3400, 4100, 5000, 6000.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 2:
        raise InputError(f"keep at least 2 snapshots (the first and the newest), got a limit of {limit!r}")
    kept = sorted(set(steps))
    while len(kept) > limit:
        drop = min(range(1, len(kept) - 1), key=lambda i: (kept[i + 1] - kept[i - 1], kept[i]))
        del kept[drop]
    return kept


def prune_snapshots(folder: Path | str, limit: int = MAX_SNAPSHOTS) -> list[Path]:
    """Delete the snapshots of the run in ``folder`` that :func:`thin_snapshots` does not keep."""
    found = list_snapshots(folder)
    kept = set(thin_snapshots([step for step, _ in found], limit))
    dropped = [path for step, path in found if step not in kept]
    for path in dropped:
        path.unlink(missing_ok=True)
    return dropped


def request_stop(folder: Path | str) -> None:
    """Ask the run's process to save and stop (it checks for the file between steps)."""
    (Path(folder) / STOP_FILE).write_text(str(time.time()), encoding="ascii")


def touch_heartbeat(folder: Path | str) -> None:
    """Say that someone is looking at the run (see :class:`~lstm_core.runs.recording.RunRecorder`'s idle limit)."""
    with contextlib.suppress(OSError):  # a run deleted under the page: nothing to keep alive
        (Path(folder) / HEARTBEAT_FILE).touch()
