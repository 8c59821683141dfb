"""The sidebar's training status, shown on every page and refreshed while a run trains."""

from __future__ import annotations

import streamlit as st

from app import state
from app.runs import TrainingRun


def _status() -> None:
    run: TrainingRun | None = st.session_state.get(state.RUN)
    if run is None:
        return
    # Seeing the page keeps the run alive; a closed tab stops refreshing, and the run then
    # stops itself after the idle limit.
    run.touch()
    step, total = run.trainer.step, run.trainer.total_steps
    label = "Training" if run.running else f"Training {run.status.replace('_', ' ')}"
    st.progress(min(1.0, step / max(1, total)), text=f"{label}: step {step:,} of {total:,}")


def training_status() -> None:
    run: TrainingRun | None = st.session_state.get(state.RUN)
    st.fragment(run_every=2.0 if run is not None and run.running else None)(_status)()
