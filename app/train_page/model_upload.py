"""Loading a model file the visitor downloaded before, into their workspace for the Generate page.

A file is checked before it is kept (``lstm_core.model.checkpoint`` refuses what it cannot load
safely); a refused file is remembered by its digest, so a rerun does not read it again.
"""

from __future__ import annotations

import json

import streamlit as st

from app import services, state
from lstm_core.files import atomic_write
from lstm_core.model import checkpoint


def upload_model_section() -> None:
    """The uploader in an expander, and what became of the file."""
    with st.expander("Load a model you downloaded before"):
        uploaded = st.file_uploader("Model file (.pt)", type=["pt"], key=state.MODEL_UPLOAD)
        if uploaded is None:
            return
        data = uploaded.getvalue()
        digest = services.digest(data)
        path = state.workspace().models / f"{digest}.pt"
        if path.is_file():
            st.success(f"Loaded {uploaded.name}: the Generate page can use it.")
            return
        refused = state.refused_upload(digest)
        if refused is None:
            try:
                checkpoint.load_checkpoint(data, name=uploaded.name, limits=services.upload_limits())
            except checkpoint.CheckpointError as error:
                refused = str(error)
                state.remember_refused_upload(digest, refused)
        if refused is not None:
            st.error(refused)
            return
        atomic_write(path.with_suffix(".json"), lambda file: file.write(json.dumps({"name": uploaded.name}).encode()))
        atomic_write(path, lambda file: file.write(data))
        st.success(f"Loaded {uploaded.name}: the Generate page can use it.")
