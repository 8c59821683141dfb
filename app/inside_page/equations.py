"""The LSTM's equations as PyTorch computes them, with the quantity on show in the accent colour,
and what each term is on the Inside page."""

from __future__ import annotations

import streamlit as st

from lstm_core.explain.inspection import QUANTITIES

# The equations as PyTorch computes them (gate order i, f, g, o), each row named like the
# quantity choice, so the line for the quantity on show can be highlighted.
EQUATIONS = {
    "input_gate": (r"i_t", r"\sigma(W_{ii}\,x_t + b_{ii} + W_{hi}\,h_{t-1} + b_{hi})"),
    "forget_gate": (r"f_t", r"\sigma(W_{if}\,x_t + b_{if} + W_{hf}\,h_{t-1} + b_{hf})"),
    "candidate": (r"g_t", r"\tanh(W_{ig}\,x_t + b_{ig} + W_{hg}\,h_{t-1} + b_{hg})"),
    "output_gate": (r"o_t", r"\sigma(W_{io}\,x_t + b_{io} + W_{ho}\,h_{t-1} + b_{ho})"),
    "cell": (r"c_t", r"f_t \odot c_{t-1} + i_t \odot g_t"),
    "hidden": (r"h_t", r"o_t \odot \tanh(c_t)"),
}
HIGHLIGHT = "#8b1e3f"  # the theme's accent


def equations_latex(chosen: str) -> str:
    """The six equations, each labelled with its name on this page; the chosen quantity's row in the accent colour."""
    rows = []
    for name, (left, right) in EQUATIONS.items():
        label = QUANTITIES[name].rsplit(" ", 1)[0]
        cells = [left, "= " + right, rf"\text{{{label}}}"]
        if name == chosen:
            cells = [rf"\textcolor{{{HIGHLIGHT}}}{{{cell}}}" for cell in cells]
        rows.append(f"{cells[0]} &{cells[1]} && {cells[2]}")
    return r"\begin{aligned}" + r" \\ ".join(rows) + r"\end{aligned}"


def equations_section(chosen: str) -> None:
    """The equations beside the key to their terms, in a bordered box."""
    with st.container(border=True):
        left, right = st.columns([3, 2])
        left.latex(equations_latex(chosen))
        right.markdown(
            f"""
**What each term is on this page.** Every letter is a vector with one number per **unit**
(a row of the heatmap below); the index *t* is the word (a column).

* $x_t$: the vector of word *t* (see *Word vectors*); a second layer reads the first layer's $h_t$.
* $i, f, g, o, c, h$: the six choices of **Quantity**; the one on show is in
  <span style="color:{HIGHLIGHT}">colour</span>.
* $h_{{t-1}}, c_{{t-1}}$: the column to the left in the $h$ and $c$ heatmaps (zeros before the first word).
* $W, b$: the trained weights; $\\sigma$ squashes into (0, 1), $\\tanh$ into (-1, 1);
  $\\odot$ multiplies unit by unit.
""",
            unsafe_allow_html=True,
        )
