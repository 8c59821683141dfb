"""The chosen model's equations as PyTorch computes them (an LSTM's, a GRU's or a plain RNN's), with the
quantity on show in the accent colour, and what each term is on the Inside page."""

from __future__ import annotations

import streamlit as st

from lstm_core.config import CELL_NAMES
from lstm_core.explain.inspection import CELL_QUANTITIES

# The equations as PyTorch computes them (its gate order: i, f, g, o for the LSTM, r, z, n for the
# GRU), each row named like the quantity choice, so the line for the quantity on show can be highlighted.
EQUATIONS: dict[str, dict[str, tuple[str, str]]] = {
    "lstm": {
        "input_gate": (r"i_t", r"\sigma(W_{ii}\,x_t + b_{ii} + W_{hi}\,h_{t-1} + b_{hi})"),
        "forget_gate": (r"f_t", r"\sigma(W_{if}\,x_t + b_{if} + W_{hf}\,h_{t-1} + b_{hf})"),
        "candidate": (r"g_t", r"\tanh(W_{ig}\,x_t + b_{ig} + W_{hg}\,h_{t-1} + b_{hg})"),
        "output_gate": (r"o_t", r"\sigma(W_{io}\,x_t + b_{io} + W_{ho}\,h_{t-1} + b_{ho})"),
        "cell": (r"c_t", r"f_t \odot c_{t-1} + i_t \odot g_t"),
        "hidden": (r"h_t", r"o_t \odot \tanh(c_t)"),
    },
    "gru": {
        "reset_gate": (r"r_t", r"\sigma(W_{ir}\,x_t + b_{ir} + W_{hr}\,h_{t-1} + b_{hr})"),
        "update_gate": (r"z_t", r"\sigma(W_{iz}\,x_t + b_{iz} + W_{hz}\,h_{t-1} + b_{hz})"),
        "new_gate": (r"n_t", r"\tanh(W_{in}\,x_t + b_{in} + r_t \odot (W_{hn}\,h_{t-1} + b_{hn}))"),
        "hidden": (r"h_t", r"(1 - z_t) \odot n_t + z_t \odot h_{t-1}"),
    },
    "rnn": {"hidden": (r"h_t", r"\tanh(W_{ih}\,x_t + b_{ih} + W_{hh}\,h_{t-1} + b_{hh})")},
}
HIGHLIGHT = "#8b1e3f"  # the theme's accent

# What the page's letters are, per cell: the state that carries the text from word to word.
TERMS = {
    "lstm": (
        "$i, f, g, o, c, h$: the six choices of **Quantity**",
        "$h_{t-1}, c_{t-1}$: the column to the left in the $h$ and $c$ heatmaps",
    ),
    "gru": (
        "$r, z, n, h$: the four choices of **Quantity**; $h$ is both its output and its memory",
        "$h_{t-1}$: the column to the left in the $h$ heatmap",
    ),
    "rnn": (
        "$h$: its only quantity: no gate decides what to keep, every word rewrites all of it",
        "$h_{t-1}$: the column to the left in the $h$ heatmap",
    ),
}


def equations_latex(chosen: str, cell: str = "lstm") -> str:
    """The cell's equations, each labelled with its name on this page; the chosen quantity's row in the accent."""
    rows = []
    for name, (left, right) in EQUATIONS[cell].items():
        label = CELL_QUANTITIES[cell][name].rsplit(" ", 1)[0]
        cells = [left, "= " + right, rf"\text{{{label}}}"]
        if name == chosen:
            cells = [rf"\textcolor{{{HIGHLIGHT}}}{{{part}}}" for part in cells]
        rows.append(f"{cells[0]} &{cells[1]} && {cells[2]}")
    return r"\begin{aligned}" + r" \\ ".join(rows) + r"\end{aligned}"


def equations_section(chosen: str, cell: str = "lstm") -> None:
    """The cell's equations beside the key to their terms, in a bordered box."""
    quantities, previous = TERMS[cell]
    with st.container(border=True):
        left, right = st.columns([3, 2])
        if cell != "lstm":
            left.caption(f"This model is a {CELL_NAMES[cell]}: its equations, not an LSTM's.")
        left.latex(equations_latex(chosen, cell))
        right.markdown(
            f"""
**What each term is on this page.** Every letter is a vector with one number per **unit**
(a row of the heatmap below); the index *t* is the word (a column).

* $x_t$: the vector of word *t* (see *Word vectors*); a second layer reads the first layer's $h_t$.
* {quantities}; the one on show is in <span style="color:{HIGHLIGHT}">colour</span>.
* {previous} (zeros before the first word).
* $W, b$: the trained weights; $\\sigma$ squashes into (0, 1), $\\tanh$ into (-1, 1);
  $\\odot$ multiplies unit by unit.
""",
            unsafe_allow_html=True,
        )
