"""Runs in a visitor's workspace, as a training process leaves them, for the page tests."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path

from app.visitor import Workspace
from lstm_core.config import Config
from lstm_core.data.dataset import prepare
from lstm_core.evaluation.baselines import Baseline
from lstm_core.model.checkpoint import Checkpoint, save_checkpoint
from lstm_core.runs import folder as run_files
from lstm_core.system.processes import process_start_time
from lstm_core.training.events import EvalEvent, StepEvent
from tests.conftest import TINY_TEXT


def put_run(workspace: Workspace, checkpoint: Checkpoint, run_id: str, training: bool = False) -> Path:
    """A finished run (or, with ``training``, one still training: its process is this test's) with a best.pt."""
    folder = workspace.runs / run_id
    run_files.create_run(folder, checkpoint.config, prepare(TINY_TEXT, 0, (0.8, 0.1, 0.1), name="sonnet"))
    save_checkpoint(checkpoint, folder / run_files.BEST_CHECKPOINT)
    status = {"state": "finished", "step": checkpoint.step, "total_steps": checkpoint.step, "best_perplexity": 3.0}
    if training:
        pid = os.getpid()
        status.update(state="running", total_steps=10 * checkpoint.step, pid=pid)
        status["pid_start"] = process_start_time(pid)
    run_files.write_json(folder / run_files.STATUS_FILE, status)
    return folder


def put_history(
    workspace: Workspace,
    run_id: str,
    config: Config,
    losses: list[tuple[int, float]],
    evals: list[tuple[int, float, float]],
    *,
    created: float,
    baselines: list[Baseline] | None = None,
) -> Path:
    """A finished run whose events file holds these training losses ``(step, loss)`` and validation
    evaluations ``(step, elapsed_s, perplexity)``, with these baselines (no checkpoint)."""
    folder = workspace.runs / run_id
    run_files.create_run(folder, config, prepare(TINY_TEXT, 0, (0.8, 0.1, 0.1), name="sonnet"), created=created)
    last = max(step for step, _ in losses)
    lines = [StepEvent(0, step, last, loss, 0.001, 1000.0, step / 10, (last - step) / 10) for step, loss in losses] + [
        EvalEvent(0, step, math.log(perplexity), perplexity, False, elapsed_s) for step, elapsed_s, perplexity in evals
    ]
    lines.sort(key=lambda event: (event.step, event.kind == "eval"))
    text = "".join(json.dumps(dataclasses.asdict(event)) + "\n" for event in lines)
    (folder / run_files.EVENTS_FILE).write_text(text, encoding="utf-8")
    best = min(perplexity for _, _, perplexity in evals)
    status = {
        "state": "finished",
        "step": last,
        "total_steps": last,
        "elapsed_s": evals[-1][1],
        "best_perplexity": best,
    }
    run_files.write_json(folder / run_files.STATUS_FILE, status)
    if baselines is not None:
        run_files.write_baselines(folder, baselines)
    return folder
