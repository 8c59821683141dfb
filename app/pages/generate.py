"""Generate page: continue a prime text, live; step word by word; score a text."""

from __future__ import annotations

import dataclasses
import html

import streamlit as st

from app import charts, state, widgets
from app.models import ModelEntry, model_choice
from app.walkthrough import walkthrough_panel
from lstm_core.checkpoint import CheckpointError
from lstm_core.config import RECIPE_PRIME_TEXTS
from lstm_core.errors import InputError
from lstm_core.evaluation import TextScore, score
from lstm_core.fields import describe_field, describe_fields
from lstm_core.sampling import ProcessorList, SamplingOptions, StepGenerator
from lstm_core.text import tokenize

MAX_SCORE_WORDS = 1_000
MAX_SCORE_CHARS = 8_000


def set_prime_from_pill() -> None:
    chosen = st.session_state.get("prime_pill")
    if chosen:
        st.session_state["prime_text"] = chosen


def prime_section() -> str:
    st.session_state.setdefault("prime_text", RECIPE_PRIME_TEXTS[0])
    st.pills("The recipe's prime texts", RECIPE_PRIME_TEXTS, key="prime_pill", on_change=set_prime_from_pill)
    return st.text_input("Prime text", key="prime_text", persist_state="session", max_chars=500)


def generator_for(entry: ModelEntry, prime: str) -> StepGenerator | None:
    """The visitor's step generator for this model and prime (the prime is fed once, then kept)."""
    cached: state.GeneratorEntry | None = st.session_state.get(state.GENERATOR)
    if cached is not None and (cached.model_key, cached.prime) == (entry.key, prime):
        return cached.generator
    try:
        generator = StepGenerator(entry.model, entry.vocab, prime)
    except CheckpointError as error:
        st.error(f"This model cannot be loaded: {error}")
        return None
    except ValueError as error:
        st.error(f"{error}. Type a prime text with at least one word.")
        return None
    st.session_state[state.GENERATOR] = state.GeneratorEntry(entry.key, prime, generator)
    return generator


def show_prime(generator: StepGenerator) -> None:
    if generator.unknown_words:
        unknown = set(generator.unknown_words)
        words = " ".join(f":red-background[{w}]" if w in unknown else w for w in generator.prime_words)
        st.markdown(f"The model reads: {words}")
        st.caption(
            f"Not in this model's vocabulary, so read as <unk>: {', '.join(generator.unknown_words)}. "
            "The text still continues."
        )


def options_section() -> SamplingOptions | None:
    """Every SamplingOptions field as a widget built from its metadata: method, seed and temperature
    up front, the others in the expander (a new option appears there by itself)."""
    # The page's own starting values (the dataclass's defaults are greedy and a fresh seed each time).
    starting = {"method": "sample", "temperature": 0.8, "seed": 7}
    keys = {"repetition_penalty": "repetition", "no_repeat_ngram": "no_repeat"}  # the keys sessions already use

    def option(name: str, method: str, container) -> object:
        info = describe_field(SamplingOptions, name)
        methods = info.extra.get("applies_to")
        return widgets.field_widget(
            SamplingOptions,
            name,
            key=keys.get(name, name),
            value=starting.get(name, info.default),
            container=container,
            disabled=methods is not None and method not in methods,
            persist_state="session",
        )

    with st.container(border=True):
        method_column, length_column, seed_column = st.columns([2, 1, 1])
        methods = describe_field(SamplingOptions, "method")
        method = (
            method_column.segmented_control(
                methods.label,
                list(methods.choices),
                format_func=methods.choice_labels.get,
                key="method",
                default=starting["method"],
                persist_state="session",
            )
            or "greedy"
        )
        length_column.slider("Words to write", 5, 100, 30, key="length", persist_state="session")
        values: dict[str, object] = {"method": method}
        values["seed"] = int(option("seed", method, seed_column))
        values["temperature"] = option("temperature", method, st)
        with st.expander("More sampling options"):
            columns = st.columns(2)
            rest = [info.name for info in describe_fields(SamplingOptions) if info.name not in values]
            for position, name in enumerate(rest):
                values[name] = option(name, method, columns[position % 2])
    try:
        return SamplingOptions(**values)
    except ValueError as error:
        st.error(str(error))
        return None


def show_text(prime_words: list[str], words: list[str], note: str = "") -> None:
    prime = html.escape(" ".join(prime_words))
    rest = html.escape(" ".join(words))
    st.markdown(
        f'<div class="generated" style="font-family: Georgia, serif; font-size: 1.25rem; line-height: 1.7;">'
        f"<b>{prime}</b> {rest}</div>",
        unsafe_allow_html=True,
    )
    if note:
        st.caption(note)


def continue_tab(generator: StepGenerator, options: SamplingOptions) -> None:
    result = generator.regenerate(st.session_state.get("length", 30), options)
    note = "Stopped where the model's choice was <unk>." if result.stopped_at_unknown else ""
    show_text(result.prime_words, result.words, note)
    st.caption("Same seed, so moving the temperature shows its effect, not luck. Change the seed for another draw.")


def pick_candidate(generator: StepGenerator) -> None:
    word = st.session_state.get("candidate_pick")
    if word:
        generator.step(word=word)
        st.session_state["candidate_pick"] = None


def step_tab(generator: StepGenerator, options: SamplingOptions) -> None:
    show_text(generator.prime_words, generator.words)
    # The chart shows what "Sample one" draws from, through the same rules and filters; its top
    # word is the one "Take the top word" takes.
    sampled = dataclasses.replace(options, method="sample", seed=None)
    distribution = generator.distribution(sampled, n=12)
    buttons = st.columns(4)
    buttons[0].button(
        "Take the top word",
        on_click=generator.step,
        kwargs={"options": dataclasses.replace(options, method="greedy")},
        width="stretch",
    )
    buttons[1].button("Sample one", on_click=generator.step, kwargs={"options": sampled}, width="stretch")
    buttons[2].button("Undo", on_click=generator.undo, disabled=not generator.can_undo, width="stretch")
    buttons[3].button("Reset", on_click=generator.reset, disabled=not generator.words, width="stretch")
    st.pills(
        "Or pick the next word",
        [c.word for c in distribution.candidates],
        key="candidate_pick",
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


def scored(entry: ModelEntry, text: str) -> TextScore:
    """The text's score, computed once per model and text (a slider move elsewhere reuses it)."""
    cached: state.ScoreEntry | None = st.session_state.get(state.SCORE)
    if cached is not None and (cached.model_key, cached.text) == (entry.key, text):
        return cached.result
    words = tokenize(text)
    if len(words) > MAX_SCORE_WORDS:
        raise InputError(f"the text has {len(words):,} words; this page scores at most {MAX_SCORE_WORDS:,}")
    result = score(entry.model, entry.vocab, text)
    st.session_state[state.SCORE] = state.ScoreEntry(entry.key, text, result)
    return result


def score_tab(entry: ModelEntry) -> None:
    text = st.text_area(
        "A text to score",
        "shall i compare thee to a summer's day",
        key=state.SCORE_TEXT,
        max_chars=MAX_SCORE_CHARS,
        help=f"At most {MAX_SCORE_WORDS:,} words ({MAX_SCORE_CHARS:,} characters).",
    )
    try:
        result = scored(entry, text)
    except ValueError as error:
        st.info(str(error))
        return
    st.metric(
        "Perplexity of this text", f"{result.perplexity:,.1f}", help="Lower means the model finds it more expected"
    )
    # The first word has no context, so it has no score: shown in grey.
    first = html.escape(tokenize(text)[0])
    spans = [f'<span title="not scored: no words before it" style="color:#8a817a; padding:2px 4px">{first}</span>']
    for word in result.words:
        # Surprisal in bits, mapped to colour: green = expected, red = surprising.
        heat = min(1.0, word.surprisal / 16)
        colour = f"hsl({int(120 * (1 - heat))}, 70%, 85%)"
        tip = f"p = {word.probability:.2%}, rank {word.rank}, {word.surprisal:.1f} bits"
        label = html.escape(word.word if word.known else f"{word.word} (unknown)")
        spans.append(
            f'<span title="{tip}" style="background:{colour}; padding:2px 4px; border-radius:4px">{label}</span>'
        )
    st.markdown(" ".join(spans), unsafe_allow_html=True)
    st.caption("Hover a word for its probability and rank. The first word (grey) has no context and is not scored.")


st.title("✒️ Generate")
entry = model_choice()
if entry is None:
    st.stop()
prime = prime_section()
generator = generator_for(entry, prime)
if generator is None:
    st.stop()
show_prime(generator)
options = options_section()
if options is None:
    st.stop()
# Only the open tab runs: a slider move redoes the text on show, not all three.
write, step, scoring = st.tabs(["Continue", "Step by step", "Score a text"], key=state.GENERATE_MODE, on_change="rerun")
if write.open:
    with write:
        continue_tab(generator, options)
if step.open:
    with step:
        step_tab(generator, options)
if scoring.open:
    with scoring:
        score_tab(entry)
