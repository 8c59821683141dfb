"""Words the Train page shows for presets, run states and durations."""

from __future__ import annotations

import math

PRESET_LABELS = {"cookbook": "Cookbook recipe", "quick": "Quick", "default": "Best", "gpu": "GPU"}
STATUS_TEXT = {
    "starting": "Starting...",
    "running": "Training...",
    "unreachable": "The training cluster is not answering:",
    "finished": "Finished.",
    "stopped": "Stopped. You can resume it.",
    "time_limit": "Stopped at this server's time limit.",
    "idle": "Stopped because no page was watching it. You can resume it.",
    "interrupted": "Interrupted (the server was stopping). You can resume it.",
    "diverged": "Stopped: the loss diverged.",
    "out_of_memory": "Ended: it went over its memory limit.",
    "failed": "Failed.",
    "crashed": "Ended unexpectedly.",
}


def status_text(state: str) -> str:
    """A run's state as a sentence ("Training..."); an unknown state as it is."""
    return STATUS_TEXT.get(state, state)


def duration(seconds: float) -> str:
    """``"4m 05s"``, or ``"42s"`` under a minute; ``"?"`` when the time is not known (not finite)."""
    if not math.isfinite(seconds):
        return "?"
    seconds = round(seconds)
    return f"{seconds // 60}m {seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
