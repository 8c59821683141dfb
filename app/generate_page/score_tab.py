"""The Generate page's "Score a text" tab: how expected a text is to the model (its perplexity),
word by word, and beside it, if chosen, to the model earlier in training.

A text's score is kept in the session per model and text, so a rerun that changes something else
(a slider) does not score it again.
"""

from __future__ import annotations

import html
from collections.abc import Callable

import streamlit as st

from app import inside_charts, services, state
from app.generate_page.snapshot_slider import snapshot_choice, snapshots_of
from app.models import ModelEntry
from lstm_core.errors import InputError
from lstm_core.evaluation import scoring
from lstm_core.model.checkpoint import CheckpointError
from lstm_core.text.cleaning import tokenize

MAX_SCORE_WORDS = 1_000
MAX_SCORE_CHARS = 8_000


def scored(key: str, load: Callable[[], services.LoadedModel], text: str) -> scoring.TextScore:
    """The text's score by the model ``key`` names, computed once per model and text: a rerun
    that changes something else (a slider) reuses it. The last two are kept (a comparison)."""
    cached: list[state.ScoreEntry] = st.session_state.setdefault(state.SCORE, [])
    for entry in cached:
        if (entry.model_key, entry.text) == (key, text):
            return entry.result
    words = tokenize(text)
    if len(words) > MAX_SCORE_WORDS:
        raise InputError(f"the text has {len(words):,} words; this page scores at most {MAX_SCORE_WORDS:,}")
    loaded = load()
    result = scoring.score(loaded.model, loaded.vocab, text)
    st.session_state[state.SCORE] = [*cached[-1:], state.ScoreEntry(key, text, result)]
    return result


def scored_words_html(text: str, result: scoring.TextScore) -> str:
    """The text's words coloured by surprisal on the blue-orange scale: blue is more expected than
    8 bits (1 in 256), orange more surprising; readable with red-green colour blindness."""
    first = html.escape(tokenize(text)[0])  # no words before it: not scored, grey
    spans = [f'<span title="not scored: no words before it" style="color:#8a817a; padding:2px 4px">{first}</span>']
    for word in result.words:
        background = inside_charts.colour_of(max(-1.0, min(1.0, (word.surprisal - 8) / 8)), "hidden")
        colour = inside_charts.text_colour_on(background)
        tip = f"p = {word.probability:.2%}, rank {word.rank}, {word.surprisal:.1f} bits"
        label = html.escape(word.word if word.known else f"{word.word} (unknown)")
        style = f"background:{background}; color:{colour}; padding:2px 4px; border-radius:4px"
        spans.append(f'<span title="{tip}" style="{style}">{label}</span>')
    return " ".join(spans)


def score_tab(entry: ModelEntry) -> None:
    """The text's box, its perplexity and its coloured words; the earlier model's beside them if chosen."""
    text = st.text_area(
        "A text to score",
        "shall i compare thee to a summer's day",
        key=state.SCORE_TEXT,
        max_chars=MAX_SCORE_CHARS,
        help=f"At most {MAX_SCORE_WORDS:,} words ({MAX_SCORE_CHARS:,} characters).",
    )
    earlier = None
    if snapshots_of(entry) and st.toggle("Also score it with the model earlier in training", key=state.SCORE_THEN):
        earlier = snapshot_choice(entry, "The model as it was at")
    try:
        result = scored(entry.key, lambda: entry.loaded, text)
        then = None
        if earlier is not None:
            path = earlier[1]
            then = scored(f"snapshot:{path}", lambda: services.load_model(path), text)
    except (CheckpointError, OSError) as error:
        st.info(f"This snapshot cannot be read ({error}); the run may have thinned it out meanwhile.")
        return
    except ValueError as error:
        st.info(str(error))
        return
    columns = st.columns(2) if then is not None else [st.container()]
    with columns[-1]:
        st.metric(
            "Perplexity of this text" if then is None else f"Perplexity now (step {entry.loaded.step:,})",
            f"{result.perplexity:,.1f}",
            delta=None if then is None else f"{result.perplexity - then.perplexity:,.1f}",
            delta_color="inverse",
            help="Lower means the model finds it more expected",
        )
        st.markdown(scored_words_html(text, result), unsafe_allow_html=True)
    if then is not None and earlier is not None:
        with columns[0]:
            st.metric(f"Perplexity at step {earlier[0]:,}", f"{then.perplexity:,.1f}")
            st.markdown(scored_words_html(text, then), unsafe_allow_html=True)
    st.caption(
        "Hover a word for its probability and rank. Blue: more expected than 1 in 256; orange: more surprising "
        "(a colour-blind-safe scale). The first word (grey) has no context and is not scored."
    )
