"""The Generate page's "Step by step" tab: the text grows a word at a time, by the top word, a
draw or the visitor's pick; the chart shows what the next word is drawn from, and the panel beside
it how the model got there (``app/walkthrough_panel.py``)."""

from __future__ import annotations

import dataclasses

import streamlit as st

from app import charts, state
from app.generate_page.text_display import show_text
from app.walkthrough_panel import walkthrough_panel
from lstm_core.sampling.options import SamplingOptions
from lstm_core.sampling.processors import ProcessorList
from lstm_core.sampling.step import StepGenerator


def step_with(generator: StepGenerator, options: SamplingOptions) -> None:
    """One step of the text, the word chosen by ``options`` (a button's callback)."""
    generator.step(options=options)


def pick_candidate(generator: StepGenerator) -> None:
    """One step of the text, the word the visitor picked from the candidates (a callback)."""
    word = st.session_state.get(state.CANDIDATE_PICK)
    if word:
        generator.step(word=word)
        st.session_state[state.CANDIDATE_PICK] = None


def step_tab(generator: StepGenerator, options: SamplingOptions) -> None:
    """The text so far, the step buttons, the candidates to pick from, their chart and the walk-through."""
    show_text(generator.prime_words, generator.words)
    # The chart shows what "Sample one" draws from, through the same rules and filters; its top
    # word is the one "Take the top word" takes.
    sampled = dataclasses.replace(options, method="sample", seed=None)
    distribution = generator.distribution(sampled, n=12)
    buttons = st.columns(4)
    buttons[0].button(
        "Take the top word",
        on_click=step_with,
        args=(generator, dataclasses.replace(options, method="greedy")),
        width="stretch",
    )
    buttons[1].button("Sample one", on_click=step_with, args=(generator, sampled), width="stretch")
    buttons[2].button("Undo", on_click=generator.undo, disabled=not generator.can_undo, width="stretch")
    buttons[3].button("Reset", on_click=generator.reset, disabled=not generator.words, width="stretch")
    st.pills(
        "Or pick the next word",
        [c.word for c in distribution.candidates],
        key=state.CANDIDATE_PICK,
        on_change=pick_candidate,
        args=(generator,),
    )
    rest = "(all other words)"
    words = [c.word for c in distribution.candidates] + [rest]
    probabilities = [c.probability for c in distribution.candidates] + [distribution.rest]
    chart_column, inside_column = st.columns([1, 2], gap="medium")
    with chart_column:
        st.altair_chart(charts.candidates_chart(words, probabilities, rest_label=rest), width="stretch")
        stages = ", ".join(processor.name for processor in ProcessorList.from_options(sampled))
        st.caption(f"What “Sample one” draws from, after: {stages} (the settings above).")
    with inside_column:
        walkthrough_panel(generator, sampled)
