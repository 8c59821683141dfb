"""Generate page: continue a prime text, live; step word by word; score a text.

Every setting on this page is bound to the page address, so the address reproduces what is on
screen and a link without the private key shares it (see ``app/share.py``).
"""

from __future__ import annotations

import dataclasses
import html

import streamlit as st

from app import charts, services, share, state, widgets
from app.models import ModelEntry, available_models, model_choice
from app.visitor import KEY_PARAM, data_root
from app.walkthrough import walkthrough_panel
from lstm_core import runs as run_files
from lstm_core.checkpoint import CheckpointError
from lstm_core.config import RECIPE_PRIME_TEXTS
from lstm_core.errors import InputError
from lstm_core.evaluation import TextScore, score
from lstm_core.fields import describe_field, describe_fields
from lstm_core.sampling import ProcessorList, SamplingOptions, StepGenerator, generate_next_word
from lstm_core.text import tokenize

BIND = "query-params"
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
    starting = {"method": "sample", "temperature": 0.8, "seed": 7}
    keys = {name: key for key, name in share.OPTION_KEYS.items()}

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
            bind=BIND,
        )

    with st.container(border=True):
        method_column, length_column, seed_column = st.columns([2, 1, 1])
        methods = describe_field(SamplingOptions, "method")
        method = (
            method_column.segmented_control(
                methods.label,
                list(methods.choices),
                format_func=methods.choice_labels.get,
                key=state.METHOD,
                default=starting["method"],
                bind=BIND,
            )
            or "greedy"
        )
        length_column.slider("Words to write", *share.LENGTH_RANGE, 30, key=state.LENGTH, bind=BIND)
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


def how_chosen(options: SamplingOptions) -> str:
    """How the words were chosen, the seed first: with the seed, the same settings give the same text."""
    if options.method == "sample":
        return f"Sampled with seed {options.seed} at temperature {options.temperature:g}: the same seed, the same text."
    if options.method == "beam":
        return f"Beam search, {options.beam_width} beams: no randomness (the seed plays no part)."
    return "Greedy: always the most likely word, no randomness (the seed plays no part)."


def ngram_text(entry: ModelEntry, prime: str, length: int, options: SamplingOptions) -> None:
    """The n-gram model of the same training words, continuing the same prime with the same settings."""
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


def continue_tab(entry: ModelEntry, generator: StepGenerator, prime: str, options: SamplingOptions) -> None:
    length = st.session_state.get(state.LENGTH, 30)
    result = generator.regenerate(length, options)
    note = "Stopped where the model's choice was <unk>." if result.stopped_at_unknown else ""
    beside = st.toggle(
        f"Set a Kneser-Ney {services.NGRAM_ORDER}-gram beside it (counts of the same training words)",
        key=state.NGRAM_BESIDE,
        help="The kind of model the LSTM has to beat: it only looks at the last "
        f"{services.NGRAM_ORDER - 1} words. Same prime, same settings, same seed.",
    )
    if not beside:
        show_text(result.prime_words, result.words, note)
    else:
        lstm, ngram = st.columns(2)
        with lstm:
            st.caption("The LSTM")
            show_text(result.prime_words, result.words, note)
        with ngram:
            st.caption(f"The {services.NGRAM_ORDER}-gram")
            ngram_text(entry, prime, length, options)
    st.caption(
        how_chosen(options) + " Moving the temperature shows its effect, not luck; change the seed for another draw."
    )


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
            link = share.share_link(st.context.url, dict(st.query_params), choice)
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
# Only the open tab runs: a slider move redoes the text on show, not all three.
write, step, scoring = st.tabs(list(share.MODES), key=state.GENERATE_MODE, on_change="rerun", bind=BIND)
share_section(entry)
if write.open:
    with write:
        continue_tab(entry, generator, prime, options)
if step.open:
    with step:
        step_tab(generator, options)
if scoring.open:
    with scoring:
        score_tab(entry)
