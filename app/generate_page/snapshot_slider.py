"""The choice of one of a run's snapshots (kept at each evaluation): the model earlier in
training, which the Write and Score tabs set beside the model now."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from app import state
from app.models import ModelEntry
from lstm_core.runs import folder as run_files


def snapshots_of(entry: ModelEntry) -> list[tuple[int, Path]]:
    """The run's snapshots (step, file), oldest first; none for a model that is not a run's."""
    return run_files.list_snapshots(entry.run.path) if entry.run is not None else []


def snapshot_choice(entry: ModelEntry, label: str) -> tuple[int, Path] | None:
    """A slider over the run's snapshots: the model as it was at one of its evaluations."""
    snapshots = snapshots_of(entry)
    if not snapshots:
        st.caption("This model has no earlier snapshots: a run keeps one at each evaluation.")
        return None
    steps = [step for step, _ in snapshots]
    if st.session_state.get(state.SNAPSHOT_STEP) not in steps:
        st.session_state[state.SNAPSHOT_STEP] = steps[0]
    step = st.select_slider(label, steps, key=state.SNAPSHOT_STEP, format_func=lambda s: f"step {s:,}")
    return step, dict(snapshots)[step]
