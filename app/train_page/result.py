"""A run that has ended: its summary, "Write with this model" and the model's download."""

from __future__ import annotations

import streamlit as st

from app import state
from app.train_page.labels import duration, status_text
from app.visitor import KEY_PARAM
from lstm_core.model import checkpoint
from lstm_core.runs import folder as run_files


def model_file(run: run_files.RunSummary) -> bytes:
    """The run's best weights as a model file: the model, its config and vocabulary, no optimiser."""
    path = run.checkpoint
    assert path is not None
    return checkpoint.load_checkpoint(path).without_training_state().to_bytes()


def result_section(run: run_files.RunSummary | None) -> None:
    """For a run that is not training and has a checkpoint: how it ended, and its model."""
    if run is None or run.active or run.checkpoint is None:
        return
    perplexity = f"{run.last_perplexity:,.1f}" if run.last_perplexity is not None else "-"
    if not run.ended_unexpectedly:
        summary = (
            f"{status_text(run.state)} {run.step:,} steps in {duration(run.elapsed_s)}; "
            f"final validation perplexity {perplexity}."
        )
        (st.success if run.state == "finished" else st.info)(summary)
    if st.button("✒️ Write with this model", key=state.WRITE_WITH_RUN, type="primary"):
        st.switch_page(
            "app/pages/generate.py",
            query_params={state.MODEL_CHOICE: f"run:{run.id}", KEY_PARAM: state.workspace().key},
        )
    st.download_button(
        "Download the model (.pt)",
        data=lambda: model_file(run),
        file_name=f"lstm-playhouse-{run.id}.pt",
        mime="application/octet-stream",
        key=state.DOWNLOAD_MODEL,
        help="The best weights of this run (model only), with its config and vocabulary.",
    )
