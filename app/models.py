"""The models a visitor can write with: their own, the run in progress, the shipped demo."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from app import services, state
from lstm_core.vocab import Vocab


@dataclass(frozen=True)
class ModelEntry:
    key: str
    label: str
    model: object
    vocab: Vocab


def available_models() -> dict[str, ModelEntry]:
    """The models this visitor can use, best first: their own, the one training, the demo."""
    models: dict[str, ModelEntry] = {}
    mine = state.my_model()
    if mine is not None:
        checkpoint, label, key = mine
        models["mine"] = ModelEntry(key, f"Your model: {label}", services.model_for(key, checkpoint), checkpoint.vocab)
    snapshot = st.session_state.get(state.SNAPSHOT)
    if snapshot is not None:
        models["snapshot"] = ModelEntry(snapshot["key"], snapshot["label"], snapshot["model"], snapshot["vocab"])
    demo, problem = services.demo_checkpoint()
    if problem:
        st.warning(problem)
    if demo is not None:
        label = f"Demo model (shipped; {services.config_summary(demo.config)})"
        models["demo"] = ModelEntry("demo", label, services.model_for("demo", demo), demo.vocab)
    return models
