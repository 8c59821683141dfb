"""The sidebar's training status, shown on every page and refreshed while a run trains."""

from __future__ import annotations

import streamlit as st

from app import state
from lstm_core.runs import folder as run_files


def _active_run() -> run_files.RunSummary | None:
    """The visitor's run in training, if any (the newest first)."""
    return next((run for run in run_files.list_runs(state.workspace().runs) if run.active), None)


def _status() -> None:
    run = _active_run()
    if run is None:
        return
    # A page showing the run keeps it alive; with every tab closed, the run stops itself after
    # the idle limit (its process watches this heartbeat).
    run_files.touch_heartbeat(run.path)
    label = {"starting": "Starting", "unreachable": "Cluster not answering"}.get(run.state, "Training")
    st.progress(min(1.0, run.step / max(1, run.total_steps)), text=f"{label}: step {run.step:,} of {run.total_steps:,}")


def training_status() -> None:
    active = _active_run() is not None
    st.fragment(run_every=2.0 if active else None)(_status)()
