"""The text the Inside page looks into: a prime text continued by the model, or the visitor's own,
and the model's trace over it.

Tracing a text costs tens of milliseconds, so the trace of the current (model, text) is kept in
the session and a slider or a unit choice redraws without tracing again.
"""

from __future__ import annotations

import streamlit as st

from app import state
from app.models import ModelEntry
from lstm_core.config import RECIPE_PRIME_TEXTS
from lstm_core.explain import inspection
from lstm_core.explain.units import WordFeatures, word_features
from lstm_core.sampling.decoding import generate
from lstm_core.sampling.options import SamplingOptions
from lstm_core.text.cleaning import tokenize

# A typed text is refused beyond these, so tracing and drawing stay well under a second.
MAX_TEXT_CHARS = 3_000
MAX_TEXT_WORDS = 500
# Words the model may add to a prime text (prime + continuation stays under the text limit).
MAX_CONTINUATION = 200

SOURCES = {"generated": "A prime text, continued by the model", "typed": "Your own text"}

DEFAULT_TEXT = """Shall I compare thee to a summer's day?
Thou art more lovely and more temperate:
Rough winds do shake the darling buds of May,
And summer's lease hath all too short a date."""


def set_prime_from_pill() -> None:
    """A recipe prime text chosen from the pills becomes the prime text (a callback)."""
    chosen = st.session_state.get(state.INSIDE_PRIME_PILL)
    if chosen:
        st.session_state[state.INSIDE_PRIME] = chosen


def continuation(entry: ModelEntry, prime: str, length: int) -> str | None:
    """The prime and the model's greedy continuation, as one text; kept for the session."""
    key = (entry.key, prime, length)
    cached = st.session_state.get(state.INSIDE_CONTINUATION)
    if cached is None or cached["key"] != key:
        try:
            generation = generate(entry.model, entry.vocab, prime, length, SamplingOptions(method="greedy"))
        except ValueError as error:
            st.error(f"{error}. Type a prime text with at least one word.")
            return None
        st.session_state[state.INSIDE_CONTINUATION] = cached = {"key": key, "value": generation}
    generation = cached["value"]
    st.caption(
        f"The first {len(generation.prime_words)} word(s) are the prime; the model wrote the other "
        f"{len(generation.words)}, always taking its most likely word (greedy)."
    )
    return generation.text


def text_problem(text: str) -> str | None:
    """Why a typed text cannot be traced (too long, or no words), or None."""
    limit = f"the page reads at most {MAX_TEXT_CHARS:,} characters and {MAX_TEXT_WORDS:,} words"
    if len(text) > MAX_TEXT_CHARS:
        return f"This text is too long: {len(text):,} characters, and {limit}, so that it stays quick. Shorten it."
    words = len(tokenize(text))
    if words > MAX_TEXT_WORDS:
        return f"This text is too long: {words:,} words, and {limit}, so that it stays quick. Shorten it."
    if words == 0:
        return "This text has no words to read. Type some."
    return None


def text_section(entry: ModelEntry) -> str | None:
    """The choice of text and its inputs; returns the text, or None (with the reason shown)."""
    st.session_state.setdefault(state.INSIDE_SOURCE, "generated")
    source = st.segmented_control(
        "Text",
        list(SOURCES),
        format_func=lambda key: SOURCES[key],
        required=True,
        key=state.INSIDE_SOURCE,
        persist_state="session",
    )
    if source == "generated":
        st.session_state.setdefault(state.INSIDE_PRIME, RECIPE_PRIME_TEXTS[0])
        left, right = st.columns([3, 2])
        with left:
            st.pills(
                "The recipe's prime texts",
                RECIPE_PRIME_TEXTS,
                key=state.INSIDE_PRIME_PILL,
                on_change=set_prime_from_pill,
            )
            prime = st.text_input("Prime text", key=state.INSIDE_PRIME, persist_state="session", max_chars=200)
        length = right.slider(
            "Words the model adds", 0, MAX_CONTINUATION, 40, key=state.INSIDE_LENGTH, persist_state="session"
        )
        return continuation(entry, prime, length)
    text = st.text_area(
        f"Your text (at most {MAX_TEXT_CHARS:,} characters and {MAX_TEXT_WORDS:,} words)",
        DEFAULT_TEXT,
        key=state.INSIDE_TEXT,
        height=130,
        persist_state="session",
        help=f"At most {MAX_TEXT_CHARS:,} characters and {MAX_TEXT_WORDS:,} words. Line breaks and question "
        "marks count for the features below.",
    )
    problem = text_problem(text)
    if problem:
        st.error(problem)
        return None
    return text


def traced(entry: ModelEntry, text: str) -> tuple[WordFeatures, inspection.Trace]:
    """The words of ``text`` and the model's trace over them, computed once per (model, text) in a session."""
    key = (entry.key, text)
    cached = st.session_state.get(state.INSIDE_TRACE)
    if cached is None or cached["key"] != key:
        features = word_features(text)
        value = (features, inspection.trace(entry.model, entry.vocab.encode(features.words)))
        st.session_state[state.INSIDE_TRACE] = cached = {"key": key, "value": value}
    return cached["value"]
