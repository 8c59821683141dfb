"""What every tab of the Generate page reads: the prime text, the step generator that has read it
for the chosen model, and the sampling settings."""

from __future__ import annotations

from typing import Any

import streamlit as st

from app import share, state, widgets
from app.generate_page.address import BIND
from app.models import ModelEntry
from lstm_core.config import RECIPE_PRIME_TEXTS
from lstm_core.fields import describe_field, describe_fields
from lstm_core.model.checkpoint import CheckpointError
from lstm_core.sampling.options import SamplingOptions
from lstm_core.sampling.step import StepGenerator


def set_prime_from_pill() -> None:
    """A recipe prime text chosen from the pills becomes the prime text (a callback)."""
    chosen = st.session_state.get(state.PRIME_PILL)
    if chosen:
        st.session_state[state.PRIME_TEXT] = chosen


def prime_section() -> str:
    """The recipe's prime texts as pills, and the prime text's box; returns the prime text."""
    st.pills("The recipe's prime texts", RECIPE_PRIME_TEXTS, key=state.PRIME_PILL, on_change=set_prime_from_pill)
    return st.text_input(
        "Prime text", RECIPE_PRIME_TEXTS[0], key=state.PRIME_TEXT, max_chars=share.MAX_PRIME_CHARS, bind=BIND
    )


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
    """The prime as the model reads it, when some of its words are not in the vocabulary."""
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
    starting: dict[str, Any] = {"method": "sample", "temperature": 0.8, "seed": 7}
    keys = {name: key for key, name in share.OPTION_KEYS.items()}

    def option(name: str, method: str, container: Any) -> Any:
        info = describe_field(SamplingOptions, name)
        methods = info.extra.get("applies_to")
        return widgets.field_widget(
            SamplingOptions,
            name,
            key=keys.get(name, name),
            value=starting.get(name, info.default),
            container=container,
            disabled=methods is not None and method not in methods,
            bind=BIND,
        )

    with st.container(border=True):
        method_column, length_column, seed_column = st.columns([2, 1, 1])
        methods = describe_field(SamplingOptions, "method")
        method: str = (
            method_column.segmented_control(
                methods.label,
                list(methods.choices),
                format_func=lambda key: methods.choice_labels.get(key, key),
                key=state.METHOD,
                default=starting["method"],
                bind=BIND,
            )
            or "greedy"
        )
        low, high = share.LENGTH_RANGE
        length_column.slider("Words to write", min_value=low, max_value=high, value=30, key=state.LENGTH, bind=BIND)
        values: dict[str, Any] = {"method": method}
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
