"""The Inside page's "Why gates" tab: one to three models side by side (the demo, the visitor's runs), the
gradient of the last word's loss on its way back through the page's text, and a memory test.

The numbers are :mod:`lstm_core.explain.gradients` and :mod:`lstm_core.explain.recall`; the charts
are :mod:`app.gates_charts`. Nothing is computed until the visitor asks (a button), and then
once per (models, text): the page's text is capped at its last
:data:`~lstm_core.explain.gradients.MAX_GRADIENT_WORDS` + 1 words, the memory test reads a dozen short
texts per distance, so a comparison of three small models takes well under a second.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import streamlit as st

from app import gates_charts as charts
from app import state
from app.models import ModelEntry
from lstm_core.config import CELL_NAMES
from lstm_core.errors import InputError
from lstm_core.explain.gradients import MAX_GRADIENT_WORDS, GradientTrace, gradient_sentence, gradient_through_time
from lstm_core.explain.recall import DISTANCES, RecallResult, recall_test, usable_names

MAX_MODELS = 3
SOURCES = {"demo": "demo", "run": "your run", "upload": "uploaded", "shared": "shared"}


@dataclass(frozen=True)
class GatesComparison:
    """What the tab draws for one (models, text): each model's gradient trace and memory test, by label."""

    gradients: dict[str, GradientTrace]
    recall: dict[str, RecallResult]
    recall_problem: str | None
    words: int


def short_label(entry: ModelEntry) -> str:
    """``LSTM (demo)``, ``plain RNN (your run 14:05)``: the cell first, the model's source after."""
    source = SOURCES[entry.source]
    if entry.run is not None:
        source += time.strftime(" %d %b %H:%M", time.localtime(entry.run.created))
    return f"{CELL_NAMES[entry.model.cell]} ({source})"


def listed_cell(entry: ModelEntry) -> str | None:
    """The cell of a run (from its config) or of the demo (held by the server), without loading a file; else None."""
    if entry.run is not None:
        return str(entry.run.config.get("cell", "lstm")) if entry.run.config else None
    return entry.model.cell if entry.source == "demo" else None


def default_models(models: dict[str, ModelEntry], first: str) -> list[str]:
    """The page's model, then the newest of each other cell among the demo and the runs: up to :data:`MAX_MODELS`."""
    chosen = [first]
    cells = {listed_cell(models[first])}
    for key, entry in models.items():
        cell = listed_cell(entry)
        if len(chosen) < MAX_MODELS and key != first and cell is not None and cell not in cells:
            chosen.append(key)
            cells.add(cell)
    return chosen


def compare(entries: list[ModelEntry], words: tuple[str, ...]) -> GatesComparison:
    """Every chosen model's gradient through the text's last words and its memory test."""
    words = words[-(MAX_GRADIENT_WORDS + 1) :]
    labels = [short_label(entry) for entry in entries]
    labels = [label if labels.count(label) == 1 else f"{label} #{n + 1}" for n, label in enumerate(labels)]
    gradients = {
        label: gradient_through_time(entry.model, entry.vocab.encode(words))
        for label, entry in zip(labels, entries, strict=True)
    }
    recall: dict[str, RecallResult] = {}
    problem = None
    try:
        names = usable_names([entry.vocab for entry in entries])
        recall = {
            label: recall_test(entry.model, entry.vocab, names) for label, entry in zip(labels, entries, strict=True)
        }
    except InputError as error:
        problem = str(error)
    return GatesComparison(gradients, recall, problem, len(words))


def gates_tab(models: dict[str, ModelEntry], page_model: str, words: tuple[str, ...]) -> None:
    """The explanation, the choice of models, the button, and the two charts once computed."""
    st.markdown(
        "**Why gates at all?** Training moves each weight by the gradient of the loss. For a model to learn to "
        "use a word it read ten words ago, the gradient has to travel back ten words. Through a plain RNN every "
        "word back multiplies it by the same weights and squashing, so it shrinks (it *vanishes*) and the RNN "
        "cannot learn what happened more than a few words ago. An LSTM's memory cell is *added to*, "
        "c = f·c + i·g, so along c the gradient is multiplied only by the forget gate, which can stay near 1."
    )
    if st.session_state.get(state.GATES_MODELS) is None or any(
        key not in models for key in st.session_state[state.GATES_MODELS]
    ):
        st.session_state[state.GATES_MODELS] = default_models(models, page_model)
    chosen = st.multiselect(
        f"Models to compare (up to {MAX_MODELS})",
        list(models),
        format_func=lambda key: models[key].label,
        max_selections=MAX_MODELS,
        key=state.GATES_MODELS,
    )
    st.caption(
        "The demo model is an LSTM. To see a plain RNN or a GRU beside it, train one on the Train page: the Quick "
        "preset with the cell changed under *Model and training settings* takes about half a minute; then a "
        "Quick LSTM for a fair pair. Your runs are compared as they are now, also while they train."
    )
    if not chosen:
        st.info("Choose at least one model.")
        return
    key = (tuple(models[k].key for k in chosen), words)
    if st.button("Compare", key="gates_compare", type="primary"):
        with st.spinner("Reading the text back and testing the memory..."):
            comparison = compare([models[k] for k in chosen], words)
        st.session_state[state.GATES_RESULT] = {"key": key, "value": comparison}
    stored = st.session_state.get(state.GATES_RESULT)
    if stored is None or stored["key"] != key:
        st.caption("Press Compare to read the text above back through each model.")
        return
    gates_results(stored["value"])


def gates_results(comparison: GatesComparison) -> None:
    """The gradient chart and its sentence, then the memory test's chart (or why it could not run)."""
    st.markdown("**The gradient through time** (solid: through the output h; dashed: through an LSTM's memory cell c)")
    st.altair_chart(charts.gradient_chart(charts.gradient_frame(comparison.gradients)), width="stretch")
    st.markdown(f"**{gradient_sentence(comparison.gradients)}**")
    st.caption(
        f"For the last {comparison.words} words of the text above: the size of the gradient of the last word's "
        "loss with respect to the state after each earlier word (its L2 norm over all layers' units), divided by "
        "its size at the state that predicts the last word; log scale. Dashed: an LSTM's memory cell c, which "
        "the last word's prediction reads only through h, so it starts one word back. One text: the lines "
        "wobble, the slopes are what differ."
    )
    st.markdown("**A memory test: a name read N words before**")
    if comparison.recall_problem:
        st.info(f"The memory test cannot run: {comparison.recall_problem}.")
        return
    st.altair_chart(charts.recall_chart(charts.recall_frame(comparison.recall)), width="stretch")
    first = next(iter(comparison.recall.values()))
    st.caption(
        f"Texts the page builds: “o <name>”, then N − 2 words of sonnet 18, then “o”, for {len(first.names)} "
        f"names ({', '.join(first.names)}). How many times more likely each model finds the name it read than the "
        "same name after reading another (the same text otherwise), averaged over the names; 1 means it has "
        f"forgotten. Distances {', '.join(map(str, DISTANCES))}; hover a point for the share of names it expects "
        f"most where it read them (chance: {first.chance:.0%})."
    )
