"""A run's record while it trains: the recorder that writes its events and status, the tail that reads them.

The training process appends every event of the trainer (:mod:`lstm_core.training.events`) to the
run folder's ``events.jsonl`` and keeps ``status.json`` current (:class:`RunRecorder`); the pages
read the new lines as they come (:class:`EventTail`). The folder's layout is :mod:`lstm_core.runs.folder`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lstm_core.runs.folder import EVENTS_FILE, HEARTBEAT_FILE, STATUS_FILE, STOP_FILE, State, write_json
from lstm_core.runs.liveness import this_host
from lstm_core.system.processes import process_start_time
from lstm_core.training.events import Event

STEP_EVENTS_PER_SECOND = 4
"""Step events a second that ``events.jsonl`` keeps (every other event is kept): a chart needs no more."""
STATUS_EVERY_S = 1.0
"""``status.json`` is rewritten at most this often between evaluations, and at least this often
while the process lives (:meth:`RunRecorder.keep_alive`): its freshness is how a server that
cannot see the process (another host, a cluster) knows it lives."""


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
    * rewrites ``status.json`` at most every :data:`STATUS_EVERY_S` and at every evaluation, and
      with :meth:`keep_alive` at least that often whatever the trainer is busy with (building
      the model, an evaluation, a save);
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
            "host": this_host(),
            "started": clock(),
            "message": "",
        }
        self._last_step_written = -math.inf
        self._last_status = -math.inf
        self._last_check = -math.inf
        self._pending_step: dict[str, Any] | None = None
        self._started = clock()
        self._ended = threading.Event()

    def keep_alive(self) -> None:
        """Rewrite the status at least every :data:`STATUS_EVERY_S` from a thread of its own until
        :meth:`end`, so its ``updated`` time says this process lives (see
        :mod:`lstm_core.runs.liveness`)."""

        def beat() -> None:
            while not self._ended.wait(STATUS_EVERY_S):
                if self.clock() - self._last_status >= STATUS_EVERY_S:
                    with contextlib.suppress(OSError):  # the run was deleted under it
                        self.update()

        threading.Thread(target=beat, name="status-keep-alive", daemon=True).start()

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
        self._ended.set()
        self._flush_step()
        self.update(state=state, message=message)
        (self.folder / STOP_FILE).unlink(missing_ok=True)

    def __call__(self, event: Event) -> None:
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
