"""Runs in a visitor's workspace, as a training process leaves them, for the page tests."""

from __future__ import annotations

import os
from pathlib import Path

from app.visitor import Workspace
from lstm_core import runs as run_files
from lstm_core.checkpoint import Checkpoint, save_checkpoint
from lstm_core.data import prepare
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
        status["pid_start"] = run_files.process_start_time(pid)
    run_files.write_json(folder / run_files.STATUS_FILE, status)
    return folder
