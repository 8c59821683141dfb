"""Generate page: continue a prime text, live; step word by word; score a text.

Every setting on this page is bound to the page address, so the address reproduces what is on
screen and a link without the private key shares it (see ``app/share.py``).
"""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import streamlit as st

from app import charts, inside_charts, services, share, state, widgets
from app.models import ModelEntry, available_models, model_choice
from app.visitor import KEY_PARAM, data_root
from app.walkthrough_panel import walkthrough_panel
from lstm_core.config import RECIPE_PRIME_TEXTS
from lstm_core.errors import InputError
from lstm_core.evaluation.ngram import KneserNey
from lstm_core.evaluation.scoring import TextScore, score
from lstm_core.fields import describe_field, describe_fields
from lstm_core.model.checkpoint import CheckpointError
from lstm_core.runs import folder as run_files
from lstm_core.sampling.decoding import generate, generate_next_word
from lstm_core.sampling.options import SamplingOptions
from lstm_core.sampling.processors import ProcessorList
from lstm_core.sampling.step import StepGenerator
from lstm_core.text.cleaning import tokenize

BIND: Literal["query-params"] = "query-params"
MAX_SCORE_WORDS = 1_000
MAX_SCORE_CHARS = 8_000


def set_prime_from_pill() -> None:
    chosen = st.session_state.get(state.PRIME_PILL)
    if chosen:
        st.session_state[state.PRIME_TEXT] = chosen


def prime_section() -> str:
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
    note = "Stopped where the model's choice was <unk>." if result.stopped_at_unknown else ""
    show_text(result.prime_words, result.words, note)


def snapshots_of(entry: ModelEntry) -> list[tuple[int, Path]]:
    """The run's snapshots (step, file), oldest first; none for a model that is not a run's."""
    return run_files.list_snapshots(entry.run.path) if entry.run is not None else []


def snapshot_choice(entry: ModelEntry, label: str) -> tuple[int, Path] | None:
    """A slider over the run's snapshots: the model as it was at one of its evaluations."""
    snapshots = snapshots_of(entry)
    if not snapshots:
        st.caption("This model has no earlier snapshots: a run keeps one at each evaluation.")
        return None
    steps = [step for step, _ in snapshots]
    if st.session_state.get(state.SNAPSHOT_STEP) not in steps:
        st.session_state[state.SNAPSHOT_STEP] = steps[0]
    step = st.select_slider(label, steps, key=state.SNAPSHOT_STEP, format_func=lambda s: f"step {s:,}")
    return step, dict(snapshots)[step]


def snapshot_text(path: Path, prime: str, length: int, options: SamplingOptions) -> None:
    """The same prime, settings and seed, continued by the model as it was in a snapshot."""
    try:
        loaded = services.load_model(path)
    except (CheckpointError, OSError) as error:
        st.info(f"This snapshot cannot be read ({error}); the run may have thinned it out meanwhile.")
        return
    result = generate(loaded.model, loaded.vocab, prime, length, options)
    note = "Stopped where the model's choice was <unk>." if result.stopped_at_unknown else ""
    show_text(result.prime_words, result.words, note)


BESIDE = {"nothing": "Nothing", "ngram": "An n-gram model", "snapshot": "The model earlier in training"}


def continue_tab(entry: ModelEntry, generator: StepGenerator, prime: str, options: SamplingOptions) -> None:
    length = st.session_state.get(state.LENGTH, 30)
    result = generator.regenerate(length, options)
    note = "Stopped where the model's choice was <unk>." if result.stopped_at_unknown else ""
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


def step_with(generator: StepGenerator, options: SamplingOptions) -> None:
    """One step of the text, the word chosen by ``options`` (a button's callback)."""
    generator.step(options=options)


def pick_candidate(generator: StepGenerator) -> None:
    word = st.session_state.get(state.CANDIDATE_PICK)
    if word:
        generator.step(word=word)
        st.session_state[state.CANDIDATE_PICK] = None


def step_tab(generator: StepGenerator, options: SamplingOptions) -> None:
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


def scored(key: str, load: Callable[[], services.LoadedModel], text: str) -> TextScore:
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
    result = score(loaded.model, loaded.vocab, text)
    st.session_state[state.SCORE] = [*cached[-1:], state.ScoreEntry(key, text, result)]
    return result


def scored_words_html(text: str, result: TextScore) -> str:
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


def requested_shares() -> list[str]:
    """The shared models this visitor opened by a link (kept while the session lasts)."""
    opened: list[str] = st.session_state.setdefault(state.OPENED_SHARES, [])
    wanted = st.query_params.get(share.MODEL_PARAM, "")
    if wanted.startswith(share.SHARE_PREFIX) and wanted not in opened:
        opened.append(wanted)
    return [choice.removeprefix(share.SHARE_PREFIX) for choice in opened]


def settle_address(models: dict[str, ModelEntry]) -> None:
    """Make the address hold valid settings before any widget reads it.

    A link's values are checked (``app/share.py``); a value out of range or a model this visitor
    cannot open goes to the nearest valid setting, with a message. A visitor coming back with a
    bare address gets their saved settings. Either way the page reopens at the corrected address
    (the widgets read it), so the address always says what is on screen. The model's choice is
    then taken from the address when a link (not this page) put it there.
    """
    present = {key: st.query_params[key] for key in (share.MODEL_PARAM, *share.PARAMS) if key in st.query_params}
    saved = st.session_state.pop(state.SAVED_GENERATE, None)
    restoring = not present and bool(saved)
    if restoring:
        assert saved is not None
        model = saved.pop(state.MODEL_CHOICE, None)
        source = {key: share.address_text(key, value) for key, value in saved.items()}
        if model is not None:
            source[share.MODEL_PARAM] = str(model)
    else:
        source = present
    checked = share.validate(source, models)
    if (restoring and checked.values) or checked.problems:
        st.session_state[state.ADDRESS_NOTES] = [] if restoring else checked.problems
        st.switch_page("app/pages/generate.py", query_params={**checked.values, KEY_PARAM: state.workspace().key})
    wanted = st.query_params.get(share.MODEL_PARAM)
    if wanted is not None and wanted != st.session_state.get(state.MODEL_IN_ADDRESS):
        st.session_state[state.MODEL_CHOICE] = wanted  # a link's model (the page never wrote it)
    notes = st.session_state.pop(state.ADDRESS_NOTES, None)
    if notes:
        st.warning("This link's settings did not all fit, so the nearest ones are used: " + "; ".join(notes) + ".")


def keep_model_in_address(choice: str) -> None:
    """Write the model's choice into the address (the other settings' widgets write their own)."""
    if st.query_params.get(share.MODEL_PARAM) != choice:
        st.query_params[share.MODEL_PARAM] = choice
    st.session_state[state.MODEL_IN_ADDRESS] = choice


def share_section(entry: ModelEntry) -> None:
    """ "Copy link": this result's address without the private key, and sharing the visitor's own model."""
    with st.popover("🔗 Copy link"):
        choice: str | None = st.session_state.get(state.MODEL_CHOICE)
        if entry.source not in ("demo", "shared"):
            shared = share.existing_share(state.workspace().folder, entry.key)
            if shared is None:
                st.write(
                    "This text comes from **your own model**, which only your workspace can open. To give others a "
                    "link, share the model first: a read-only copy of its weights gets a link of its own, which "
                    "shows nothing else of yours."
                )
                st.button("Share this model", on_click=share_own_model, args=(entry,), type="primary")
                choice = None
            else:
                choice = share.SHARE_PREFIX + shared
        if choice is not None:
            # Every setting spelled out, defaults too: the link means the same if the page's defaults change.
            settings = {
                key: share.address_text(key, st.session_state[key]) for key in share.PARAMS if key in st.session_state
            }
            link = share.share_link(st.context.url, settings, choice)
            st.write("Anyone who opens this link sees this result, word for word (the seed is in it):")
            st.code(link, language=None, wrap_lines=True)
        st.caption(
            "This page's own address is **private**: its `k=` part is your workspace key, which opens your runs and "
            "models. Share the link above instead."
        )


def share_own_model(entry: ModelEntry) -> None:
    assert entry.checkpoint is not None, "only a model from a file is shared"
    label = entry.label.removeprefix("Your run of ").removeprefix("Uploaded: ")
    share.share_model(data_root(), state.workspace().folder, entry.key, entry.checkpoint, label)


st.title("✒️ Generate")
models = available_models(requested_shares())
settle_address(models)
entry = model_choice(models)
if entry is None:
    st.stop()
keep_model_in_address(st.session_state[state.MODEL_CHOICE])
prime = prime_section()
generator = generator_for(entry, prime)
if generator is None:
    st.stop()
show_prime(generator)
options = options_section()
if options is None:
    st.stop()
share_section(entry)
# Only the open tab runs: a slider move redoes the text on show, not all three.
write, step, scoring = st.tabs(list(share.MODES), key=state.GENERATE_MODE, on_change="rerun", bind=BIND)
if write.open:
    with write:
        continue_tab(entry, generator, prime, options)
if step.open:
    with step:
        step_tab(generator, options)
if scoring.open:
    with scoring:
        score_tab(entry)
