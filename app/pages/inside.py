"""Inside the LSTM page: the equations, every gate and memory for a text, one unit, word vectors, and why gates.

The page only draws: the traced forward pass, the unit searches and the gradient through time are
lstm_core.explain, the charts and coloured words are app/inside_charts.py and app/gates_charts.py,
and the page's parts, one module per tab, are in app/inside_page/. A GRU or a plain RNN shows its
own equations and quantities.
"""

from __future__ import annotations

import streamlit as st

from app import state
from app.inside_page.equations import equations_section
from app.inside_page.gates_tab import gates_tab
from app.inside_page.heatmap_tab import heatmap_tab
from app.inside_page.quantity_choice import current_unit, keep_quantity_of, quantity_section
from app.inside_page.text_choice import text_section, traced
from app.inside_page.unit_tab import unit_tab
from app.inside_page.vectors_tab import vectors_tab
from app.models import available_models, model_choice

st.title("🔬 Inside the LSTM")
st.markdown(
    "For every word it reads, each unit of the LSTM computes three gates, a candidate memory, a new memory and "
    "an output. This page shows them all for a text, follows one unit, finds units that respond to something, "
    "explores the word vectors, and shows why the gates matter, beside a GRU or a plain RNN you trained."
)
st.session_state.setdefault(state.INSIDE_QUANTITY, "hidden")
equations_box = st.container()  # filled once the model, and so its cell, is known
st.session_state.setdefault(state.INSIDE_MODEL, st.session_state.get(state.MODEL_CHOICE))  # start from Generate's
models = available_models()
entry = model_choice(models, key=state.INSIDE_MODEL, persist_state="session")
cell = entry.model.cell if entry is not None else "lstm"
with equations_box:
    equations_section(keep_quantity_of(cell), cell)
if entry is None:
    st.stop()
text = text_section(entry)
if text is None:
    st.stop()
features, traced_text = traced(entry, text)
layer, quantity = quantity_section(len(traced_text.layers), cell)
values = traced_text.layers[layer].values(quantity)  # (T, H)
unknown = sorted({w for w in features.words if w not in entry.vocab})
if unknown:
    st.caption(f"Not in this model's vocabulary, so read as <unk>: {', '.join(unknown)}.")
unit = current_unit(values)
heatmap, one_unit, vectors, why_gates = st.tabs(["Heatmap", "One unit", "Word vectors", "Why gates"])
with heatmap:
    heatmap_tab(values, features.words, quantity, unit)
with one_unit:
    unit_tab(values, features, quantity, unit)
with vectors:
    vectors_tab(entry)
with why_gates:
    gates_tab(models, st.session_state[state.INSIDE_MODEL], features.words)
