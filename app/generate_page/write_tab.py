"""The Generate page's "Write" tab: the model continues the prime, and beside it, if chosen, an
n-gram model of the same training words or the model earlier in training (same prime, settings
and seed)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from app import services, state
from app.generate_page.snapshot_slider import snapshot_choice, snapshots_of
from app.generate_page.text_display import show_text
from app.models import ModelEntry
from lstm_core.evaluation.ngram import KneserNey
from lstm_core.model.checkpoint import CheckpointError
from lstm_core.runs import folder as run_files
from lstm_core.sampling.decoding import generate, generate_next_word
from lstm_core.sampling.options import SamplingOptions
from lstm_core.sampling.step import StepGenerator

BESIDE = {"nothing": "Nothing", "ngram": "An n-gram model", "snapshot": "The model earlier in training"}
STOPPED_AT_UNKNOWN = "Stopped where the model's choice was <unk>."


def how_chosen(options: SamplingOptions) -> str:
    """How the words were chosen, the seed first: with the seed, the same settings give the same text."""
    if options.method == "sample":
        return f"Sampled with seed {options.seed} at temperature {options.temperature:g}: the same seed, the same text."
    if options.method == "beam":
        return f"Beam search, {options.beam_width} beams: no randomness (the seed plays no part)."
    return "Greedy: always the most likely word, no randomness (the seed plays no part)."


def ngram_text(entry: ModelEntry, prime: str, length: int, options: SamplingOptions) -> None:
    """The n-gram model of the same training words, continuing the same prime with the same settings."""
    ngram: KneserNey | None
    if entry.source == "run" and entry.run is not None:
        ngram = services.run_ngram(entry.run.path / run_files.DATASET_DIR)
    elif entry.source == "demo":
        ngram = services.demo_ngram(entry.loaded)
    else:
        ngram = None
    if ngram is None:
        st.info("This model's training text is not known here (an uploaded or shared model), so there is no n-gram.")
        return
    try:
        result = generate_next_word(ngram, entry.vocab, prime, length, options)
    except ValueError as error:
        st.info(str(error))
        return
    show_text(result.prime_words, result.words, STOPPED_AT_UNKNOWN if result.stopped_at_unknown else "")


def snapshot_text(path: Path, prime: str, length: int, options: SamplingOptions) -> None:
    """The same prime, settings and seed, continued by the model as it was in a snapshot."""
    try:
        loaded = services.load_model(path)
    except (CheckpointError, OSError) as error:
        st.info(f"This snapshot cannot be read ({error}); the run may have thinned it out meanwhile.")
        return
    result = generate(loaded.model, loaded.vocab, prime, length, options)
    show_text(result.prime_words, result.words, STOPPED_AT_UNKNOWN if result.stopped_at_unknown else "")


def write_tab(entry: ModelEntry, generator: StepGenerator, prime: str, options: SamplingOptions) -> None:
    """The continuation of ``prime`` as long as the page's length slider says, and what is set beside it."""
    length = st.session_state.get(state.LENGTH, 30)
    result = generator.regenerate(length, options)
    note = STOPPED_AT_UNKNOWN if result.stopped_at_unknown else ""
    beside = st.segmented_control(
        "Set beside it",
        [key for key in BESIDE if key != "snapshot" or snapshots_of(entry)],
        format_func=lambda key: BESIDE[key],
        default="nothing",
        key=state.BESIDE,
        help=f"A Kneser-Ney {services.NGRAM_ORDER}-gram counts the same training words and looks at the last "
        f"{services.NGRAM_ORDER - 1} only: the kind of model the LSTM has to beat. A snapshot is this run's model "
        "as it was at one of its evaluations. Same prime, same settings, same seed.",
    )
    if beside in (None, "nothing"):
        show_text(result.prime_words, result.words, note)
    elif beside == "ngram":
        lstm, ngram = st.columns(2)
        with lstm:
            st.caption("The LSTM")
            show_text(result.prime_words, result.words, note)
        with ngram:
            st.caption(f"The {services.NGRAM_ORDER}-gram")
            ngram_text(entry, prime, length, options)
    else:
        chosen = snapshot_choice(entry, "The model as it was at")
        then, now = st.columns(2)
        with now:
            st.caption(f"Now (step {entry.loaded.step:,})")
            show_text(result.prime_words, result.words, note)
        if chosen is not None:
            with then:
                st.caption(f"At step {chosen[0]:,}")
                snapshot_text(chosen[1], prime, length, options)
    st.caption(
        how_chosen(options) + " Moving the temperature shows its effect, not luck; change the seed for another draw."
    )
