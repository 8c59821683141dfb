"""Inside the LSTM page: the equations, every gate and memory for a text, one unit, word vectors.

The page only draws: the traced forward pass and the unit searches are lstm_core.explain,
the charts and coloured words are app/inside_charts.py, and the page's parts, one module per tab,
are in app/inside_page/.
"""

from __future__ import annotations

import streamlit as st

from app import state
from app.inside_page.equations import equations_section
from app.inside_page.heatmap_tab import heatmap_tab
from app.inside_page.quantity_choice import current_unit, quantity_section
from app.inside_page.text_choice import text_section, traced
from app.inside_page.unit_tab import unit_tab
from app.inside_page.vectors_tab import vectors_tab
from app.models import available_models, model_choice

st.title("🔬 Inside the LSTM")
st.markdown(
    "For every word it reads, each unit of the LSTM computes three gates, a candidate memory, a new memory and "
    "an output. This page shows them all for a text, follows one unit, finds units that respond to something, "
    "and explores the word vectors."
)
st.session_state.setdefault(state.INSIDE_QUANTITY, "hidden")
equations_section(st.session_state[state.INSIDE_QUANTITY])
st.session_state.setdefault(state.INSIDE_MODEL, st.session_state.get(state.MODEL_CHOICE))  # start from Generate's
entry = model_choice(available_models(), key=state.INSIDE_MODEL, persist_state="session")
if entry is None:
    st.stop()
text = text_section(entry)
if text is None:
    st.stop()
features, traced_text = traced(entry, text)
layer, quantity = quantity_section(len(traced_text.layers))
values = traced_text.layers[layer].values(quantity)  # (T, H)
unknown = sorted({w for w in features.words if w not in entry.vocab})
if unknown:
    st.caption(f"Not in this model's vocabulary, so read as <unk>: {', '.join(unknown)}.")
unit = current_unit(values)
heatmap, one_unit, vectors = st.tabs(["Heatmap", "One unit", "Word vectors"])
with heatmap:
    heatmap_tab(values, features.words, quantity, unit)
with one_unit:
    unit_tab(values, features, quantity, unit)
with vectors:
    vectors_tab(entry)
