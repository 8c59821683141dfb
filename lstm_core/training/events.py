"""What the trainer reports, as plain frozen dataclasses: no torch, so a page can read a run's events cheaply.

The trainer calls one callback with each :data:`Event` (a step, an evaluation, prime-text
samples, a checkpoint, the end). The run folder keeps them, one JSON object a line, in
``events.jsonl`` (:mod:`lstm_core.runs.recording`), and :func:`event_from_dict` turns a line back
into its event. The app's charts and progress read them through this module alone: importing it
costs nothing, while importing the trainer costs torch (about a second of a fresh server).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class StepEvent:
    epoch: int
    step: int
    total_steps: int
    """The steps the run will take: its epochs', or, with a time budget (``train_minutes``), the
    steps the time left holds at this session's pace so far, if fewer."""
    loss: float
    learning_rate: float
    tokens_per_s: float
    elapsed_s: float
    eta_s: float
    kind: Literal["step"] = "step"


@dataclass(frozen=True)
class EvalEvent:
    epoch: int
    step: int
    val_loss: float
    perplexity: float
    best: bool
    elapsed_s: float = 0.0
    kind: Literal["eval"] = "eval"


@dataclass(frozen=True)
class SampleEvent:
    step: int
    samples: dict[str, str]
    kind: Literal["sample"] = "sample"


@dataclass(frozen=True)
class CheckpointEvent:
    step: int
    path: str
    best: bool
    kind: Literal["checkpoint"] = "checkpoint"


EndReason = Literal["finished", "stopped", "time_limit", "idle", "interrupted"]
"""Why a run ended: all epochs (or its ``train_minutes``) done; a stop was asked for (``stopped``: by
the user, ``idle``: nobody watched it, ``interrupted``: the process was told to end, e.g. a server
shutting down); or its training time reached the limit."""
StopReason = Literal["stopped", "idle", "interrupted"]
"""The end reasons a stop asked of a running trainer can give (see :data:`EndReason`)."""


@dataclass(frozen=True)
class EndEvent:
    step: int
    reason: EndReason
    elapsed_s: float
    val_loss: float | None
    perplexity: float | None
    kind: Literal["end"] = "end"


Event = StepEvent | EvalEvent | SampleEvent | CheckpointEvent | EndEvent
Callback = Callable[[Event], None]
EVENT_TYPES: dict[str, type] = {
    "step": StepEvent,
    "eval": EvalEvent,
    "sample": SampleEvent,
    "checkpoint": CheckpointEvent,
    "end": EndEvent,
}


def event_from_dict(data: dict[str, Any]) -> Event | None:
    """An event from its plain form (a line of a run's ``events.jsonl``), or None if it is not one.

    Fields the event type does not know are ignored, so a newer writer's extra fields do not
    break an older reader.
    """
    cls = EVENT_TYPES.get(data.get("kind", ""))
    if cls is None:
        return None
    names = {f.name for f in dataclasses.fields(cls)}
    try:
        return cls(**{name: value for name, value in data.items() if name in names})
    except TypeError:  # a required field is missing
        return None
