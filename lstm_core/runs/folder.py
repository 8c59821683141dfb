"""A training run on disk: one folder that says everything about the run, to anyone who reads it.

The command line writes it and the app only reads it, so a page reload, a second tab, a server
restart or a crashed training process all find the same truth::

    RUN/
      run.json       what was asked for: the config, the data, when (written once, at creation)
      dataset/       the prepared data (Dataset.save): a resume trains on exactly the same ids
      status.json    where the run stands: state, process id, step, time (rewritten atomically)
      events.jsonl   the trainer's reports, one JSON object a line (steps thinned to a few a second)
      last.pt        everything needed to resume: at every evaluation, every save_every steps, at the end
      best.pt        the weights with the best validation loss so far (model only)
      baselines.json the n-gram baselines' validation perplexities on this run's data (written once,
                     by the training process when the run starts from step 0; see lstm_core/evaluation/baselines.py)
      snapshots/     step-<7-digit step>.pt: the model (float16, model only) at evaluations, at most
                     MAX_SNAPSHOTS of them, thinned as the run goes on (see thin_snapshots)
      process.json   the process that trains it, written by whoever started it (the app)
      exit.json      how that process ended, written by whoever waited for it
      log.txt        the process's own output, when the app started it
      stop           exists once a stop was asked for; the process sees it within a step
      heartbeat      touched by the pages that show the run: a run started with an idle limit
                     stops when nobody has looked at it for that long

Nothing here imports a UI or torch (only :func:`read_baselines` brings in torch, when it is called),
so reading a run is cheap.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from lstm_core.errors import InputError
from lstm_core.files import atomic_write_text

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

State = Literal[
    "starting",
    "running",
    "finished",
    "stopped",
    "time_limit",
    "idle",
    "interrupted",
    "diverged",
    "out_of_memory",
    "failed",
    "crashed",
]
"""``starting``/``running`` while a process trains it; the trainer's end reasons (``finished``,
``stopped``, ``time_limit``, ``idle``, ``interrupted``); ``diverged``, ``out_of_memory`` and
``failed`` when the process ended on an error it could report; ``crashed`` when it ended without
a word (killed, or gone with the server), which only a reader can tell."""

ACTIVE_STATES = frozenset({"starting", "running"})
EXIT_OUT_OF_MEMORY = 3
STEP_EVENTS_PER_SECOND = 4
STATUS_EVERY_S = 1.0
STARTUP_GRACE_S = 120.0
"""A run that says ``starting`` with no live process after this long failed to start."""


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
    folder = Path(folder)
    dataset.save(folder / DATASET_DIR)
    created = time.time() if created is None else created
    write_json(folder / STATUS_FILE, {"state": "starting", "updated": created, "message": ""})
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


# ---- processes -------------------------------------------------------------------------------


def process_stat(pid: int) -> list[str] | None:
    """The fields of Linux's ``/proc/PID/stat`` after the command name (``[0]`` is the state, ``T``:
    stopped, ``Z``: zombie; ``[19]`` the start time), or None where the process or ``/proc`` is not."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as file:
            return file.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def process_start_time(pid: int) -> int | None:
    """The start time of process ``pid`` (clock ticks since boot, from ``/proc``), or None if it
    is not running (or is a zombie). With the pid it names one process for good: a pid can be
    reused by another process after the first one ends, its start time cannot."""
    fields = process_stat(pid)
    if fields is None:
        return None if os.path.isdir("/proc") else _start_time_without_proc(pid)
    if fields[0] in ("Z", "X"):  # a zombie has ended; it only waits to be reaped
        return None
    return int(fields[19])


def _start_time_without_proc(pid: int) -> int | None:
    """Where there is no ``/proc`` (macOS): alive or not, without a start time to compare."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return 0
    return 0


def process_alive(pid: Any, start: Any) -> bool:
    """Whether the process ``pid`` that started at ``start`` (see :func:`process_start_time`) runs."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    now = process_start_time(pid)
    return now is not None and (not isinstance(start, int) or now == 0 or now == start)


def process_ending(pid: Any, start: Any) -> bool:
    """Whether the process ``pid`` that started at ``start`` has ended but not yet been reaped
    (a zombie): its parent is about to learn, and record, how it ended."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    fields = process_stat(pid)
    return fields is not None and fields[0] == "Z" and (not isinstance(start, int) or int(fields[19]) == start)


def signal_name(returncode: int) -> str:
    """``-9`` -> ``"killed by signal 9 (SIGKILL)"``; ``1`` -> ``"exit code 1"``."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "unknown"
        return f"killed by signal {-returncode} ({name})"
    return f"exit code {returncode}"


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


def _number(value: Any, default: float = 0.0) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default


def _effective_state(folder: Path, status: dict[str, Any]) -> tuple[State, str, int | None]:
    """The state a reader should believe: a run that says it trains but has no live process crashed."""
    state = status.get("state", "starting")
    message = str(status.get("message", ""))
    launched = read_json(folder / PROCESS_FILE) or {}
    pid = status.get("pid", launched.get("pid"))
    if state not in ACTIVE_STATES:
        return state, message, None
    if process_alive(status.get("pid"), status.get("pid_start")) or process_alive(
        launched.get("pid"), launched.get("pid_start")
    ):
        return state, message, pid if isinstance(pid, int) else None
    exit_info = read_json(folder / EXIT_FILE)
    if exit_info is None and any(
        process_ending(record.get("pid"), record.get("pid_start")) for record in (status, launched)
    ):
        return state, message, None  # ended a moment ago: the server that started it records how next
    if exit_info is not None and isinstance(exit_info.get("returncode"), int):
        code = exit_info["returncode"]
        if code == EXIT_OUT_OF_MEMORY:
            return "out_of_memory", message or "the training process went over its memory limit", None
        return "crashed", f"the training process ended unexpectedly ({signal_name(code)})", None
    started = _number(launched.get("started"), _number(status.get("updated"), 0.0))
    if state == "starting" and not status.get("pid") and time.time() - started < STARTUP_GRACE_S:
        return "starting", message, None  # the process is still on its way (or its record is)
    return "crashed", "the training process is gone (the server may have restarted)", None


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
        created=_number(record.get("created")),
        config=config,
        dataset=dataset,
        state=state,
        message=message,
        step=int(_number(status.get("step"))),
        total_steps=int(_number(status.get("total_steps"))),
        elapsed_s=_number(status.get("elapsed_s")),
        best_perplexity=_number(best) if best is not None else None,
        last_perplexity=_number(last) if last is not None else None,
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
    """Say that someone is looking at the run (see :class:`RunRecorder`'s idle limit)."""
    with contextlib.suppress(OSError):  # a run deleted under the page: nothing to keep alive
        (Path(folder) / HEARTBEAT_FILE).touch()


# ---- events ----------------------------------------------------------------------------------


class EventTail:
    """Reads a run's ``events.jsonl`` incrementally: each :meth:`read` parses only the new lines.

    A line is parsed only once it is complete (the writer appends whole lines, but a reader can
    see the file between two writes). If the file is replaced or shrinks, it starts again.
    """

    def __init__(self, path: Path | str, parse: Callable[[dict[str, Any]], Any] | None = None) -> None:
        self.path = Path(path)
        self.parse = parse or (lambda event: event)
        self._lock = threading.Lock()
        self._offset = 0
        self._identity: tuple[int, int] | None = None
        self.events: list[Any] = []

    def read(self) -> list[Any]:
        """All events so far, oldest first, each passed through ``parse`` once (a new list; the
        events are shared: do not change them). Lines that do not parse are skipped."""
        with self._lock:
            try:
                stat = self.path.stat()
            except OSError:
                self._offset, self._identity, self.events = 0, None, []
                return []
            identity = (stat.st_ino, stat.st_dev)
            if identity != self._identity or stat.st_size < self._offset:
                self._offset, self._identity, self.events = 0, identity, []
            if stat.st_size > self._offset:
                with self.path.open("rb") as file:
                    file.seek(self._offset)
                    data = file.read(stat.st_size - self._offset)
                complete = data.rfind(b"\n") + 1
                for line in data[:complete].splitlines():
                    try:
                        event = json.loads(line)
                    except (json.JSONDecodeError, UnicodeDecodeError):
                        continue  # a damaged line loses that event only
                    if isinstance(event, dict) and isinstance(event.get("kind"), str):
                        parsed = self.parse(event)
                        if parsed is not None:
                            self.events.append(parsed)
                self._offset += complete
            return list(self.events)


# ---- writing a run (the training process) ----------------------------------------------------


class RunRecorder:
    """A trainer callback that keeps a run folder up to date, and the run's stop conditions.

    * appends every event to ``events.jsonl``, step events thinned to
      :data:`STEP_EVENTS_PER_SECOND` (plus the last step of the run);
    * rewrites ``status.json`` at most every :data:`STATUS_EVERY_S` and at every evaluation;
    * asks the trainer to stop when the ``stop`` file appears, or (with ``idle_s``) when the
      ``heartbeat`` file is older than ``idle_s``.
    """

    def __init__(
        self,
        folder: Path | str,
        request_stop: Callable[[str], None],
        *,
        idle_s: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.folder = Path(folder)
        self._request_stop = request_stop
        self.idle_s = idle_s
        self.clock = clock
        self._lock = threading.Lock()
        self._status: dict[str, Any] = {
            "state": "running",
            "pid": os.getpid(),
            "pid_start": process_start_time(os.getpid()),
            "started": clock(),
            "message": "",
        }
        self._last_step_written = -math.inf
        self._last_status = -math.inf
        self._last_check = -math.inf
        self._pending_step: dict[str, Any] | None = None
        self._started = clock()

    def begin(self, **fields: Any) -> None:
        """Mark the run as training (with ``step``, ``total_steps`` and such as known so far)."""
        self.update(**fields)

    def update(self, **fields: Any) -> None:
        with self._lock:
            self._status.update(fields, updated=self.clock())
            write_json(self.folder / STATUS_FILE, self._status)
            self._last_status = self.clock()

    def end(self, state: State, message: str = "") -> None:
        """The run is over: flush the last step and record why it ended (a stop asked for is done)."""
        self._flush_step()
        self.update(state=state, message=message)
        (self.folder / STOP_FILE).unlink(missing_ok=True)

    def __call__(self, event: Any) -> None:
        data = dataclasses.asdict(event)
        now = self.clock()
        if data["kind"] == "step":
            self._pending_step = data
            if now - self._last_step_written >= 1.0 / STEP_EVENTS_PER_SECOND:
                self._flush_step()
            status = {
                "step": data["step"],
                "total_steps": data["total_steps"],
                "elapsed_s": data["elapsed_s"],
                "tokens_per_s": data["tokens_per_s"],
            }
            if now - self._last_status >= STATUS_EVERY_S:
                self.update(**status)
            else:
                with self._lock:  # the memory watchdog's thread may be writing the status
                    self._status.update(status)
            if now - self._last_check >= 0.2:
                self._last_check = now
                self._check_stop(now)
            return
        self._flush_step()
        self._append(data)
        if data["kind"] == "end":  # the run's whole time, past its last step's report
            self.update(elapsed_s=data["elapsed_s"])
        if data["kind"] == "eval":
            best = self._status.get("best_perplexity")
            perplexity = data["perplexity"]
            self.update(
                last_perplexity=perplexity,
                best_perplexity=perplexity if best is None or perplexity < best else best,
            )

    def _flush_step(self) -> None:
        if self._pending_step is not None:
            self._append(self._pending_step)
            self._pending_step = None
            self._last_step_written = self.clock()

    def _append(self, data: dict[str, Any]) -> None:
        line = json.dumps(data, ensure_ascii=False, allow_nan=True) + "\n"
        with (self.folder / EVENTS_FILE).open("a", encoding="utf-8") as file:
            file.write(line)

    def _check_stop(self, now: float) -> None:
        if (self.folder / STOP_FILE).exists():
            self._request_stop("stopped")
        elif self.idle_s is not None:
            try:
                seen = (self.folder / HEARTBEAT_FILE).stat().st_mtime
            except OSError:
                seen = self._started
            if now - max(seen, self._started) > self.idle_s:
                self._request_stop("idle")
