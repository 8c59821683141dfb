"""The Train page's settings: the presets, every setting of the model and its training, and what
would stop a run with them from starting."""

from __future__ import annotations

import streamlit as st

from app import services, state, widgets
from app.train_page.labels import PRESET_LABELS
from lstm_core.config import PRESET_HELP, Config
from lstm_core.data.batching import steps_per_epoch
from lstm_core.model.memory import estimate_memory, format_bytes
from lstm_core.model.network import count_parameters
from lstm_core.runs import capacity
from lstm_core.runs.admission import TokenCounts, admission_problems


def settings_section() -> None:
    """The preset buttons (the chosen one highlighted), then every setting in an expander."""
    st.write("**Presets**")
    offered = state.offered_presets()
    columns = st.columns(len(offered))
    for column, name in zip(columns, offered, strict=True):
        chosen = st.session_state.get(state.PRESET) == name
        column.button(
            PRESET_LABELS.get(name, name),
            key=f"preset_{name}",
            help=PRESET_HELP[name],
            on_click=state.apply_preset,
            args=(name,),
            type="primary" if chosen else "secondary",
            width="stretch",
        )

    def widget(name: str) -> None:
        # Built from the Config field's metadata; a preset or a loaded run may hold a value outside
        # the usual range or between the offered steps, and the widget then offers it too.
        spec = widgets.widget_spec(Config, name, current=st.session_state[state.CONFIG][name])
        extra = {"horizontal": True} if spec.kind == "radio" else {}
        state.config_widget(getattr(st, spec.kind), spec.label, name, scope="train", **spec.kwargs, **extra)

    with st.expander("Model and training settings", expanded=False):
        left, right = st.columns(2)
        for column, group in ((left, "Model"), (left, "Regularisation"), (right, "Training")):
            with column:
                st.caption(group)
                for name in state.UI_GROUPS[group]:
                    widget(name)


def check_settings(
    config: Config | None, problems: list[str], text: services.Text, vocab_counts: list[int]
) -> list[str]:
    """Everything that would stop a run from starting, in plain words: only that this server cannot
    train, where it cannot (then no setting would help, and the page says so once)."""
    host_problem = services.training_problem()
    if host_problem is not None:
        return [host_problem]
    if config is None:
        return problems
    tokens = TokenCounts.of_split(text.encoded.tokens, config.split_fractions)
    return problems + admission_problems(config, vocab_counts, tokens, services.limits().admission())


def summary_caption(config: Config, text: services.Text, vocab_counts: list[int]) -> None:
    """One line on what the settings make: the text, the model's size, how many steps it trains,
    the memory its training needs against what a run may use here, and how many runs this server
    trains now (and why only one at a time, when so)."""
    parameters = count_parameters(config, len(vocab_counts), vocab_counts)
    tokens = TokenCounts.of_split(text.encoded.tokens, config.split_fractions)
    steps = steps_per_epoch(tokens.train, config.batch_size, config.training_seq_len)
    epochs = f"{config.epochs:,} epoch{'s' if config.epochs != 1 else ''} of {steps:,} steps"
    memory = estimate_memory(config, vocab_counts, text.encoded.tokens, parameters)
    limits = services.limits()
    one_run = capacity.one_run_reason(limits, services.resources())
    st.caption(
        f"Text: {text.name}, {text.encoded.tokens:,} words, vocabulary {len(vocab_counts):,}. "
        f"Model: {services.config_summary(config)}, {parameters:,} parameters; {epochs}; training needs about "
        f"{format_bytes(memory.total)} of the {format_bytes(limits.run_memory_mb * 1e6)} a run may use here. "
        f"Runs training on this server now: {services.runs_training_now()} of {limits.max_runs}"
        + (f" ({one_run})." if one_run else ".")
    )
