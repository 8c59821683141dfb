"""Train page: settings, start / stop / resume, and live charts of a run in a background thread."""

from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from app import charts, services, state, widgets
from app.corpus_state import chosen_corpus
from app.runs import REGISTRY, CapacityError, TrainingRun
from lstm_core.batching import min_tokens
from lstm_core.checkpoint import CheckpointError, load_checkpoint
from lstm_core.config import PRESET_HELP, PRESETS, Config
from lstm_core.model import count_parameters
from lstm_core.trainer import EvalEvent, SampleEvent, StepEvent

PRESET_LABELS = {"cookbook": "Cookbook recipe", "quick": "Quick", "default": "Best"}
STATUS_TEXT = {
    "running": "Training...",
    "finished": "Finished.",
    "stopped": "Stopped. You can resume it.",
    "time_limit": "Stopped at this server's time limit. You can resume it.",
    "abandoned": "Stopped because the page was left alone. You can resume it.",
    "failed": "Failed.",
}


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = round(seconds)
    return f"{seconds // 60}m {seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def settings_section() -> None:
    st.write("**Presets**")
    columns = st.columns(len(PRESETS))
    for column, name in zip(columns, PRESETS, strict=True):
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

    model_fields = ("rnn_size", "embedding_size", "num_layers", "dropout", "tie_weights", "output_layer", "precision")
    training_fields = ("epochs", "batch_size", "training_seq_len", "learning_rate", "lr_schedule", "min_word_freq")
    with st.expander("Model and training settings", expanded=False):
        model, training = st.columns(2)
        with model:
            st.caption("Model")
            for name in model_fields:
                widget(name)
        with training:
            st.caption("Training")
            for name in (*training_fields, "grad_clip", "eval_every", "seed"):
                widget(name)


def check_settings(config: Config | None, problems: list[str], tokens: int, parameters: int) -> list[str]:
    """Everything that would stop a run from starting, in plain words."""
    if config is None:
        return problems
    limits = services.limits()
    train_tokens = int(tokens * config.split_fractions[0])
    needed = min_tokens(config.batch_size, config.training_seq_len)
    if train_tokens < needed:
        problems.append(
            f"The training part of this text has {train_tokens:,} words; batch_size {config.batch_size} x "
            f"(training_seq_len {config.training_seq_len} + 1) needs at least {needed:,}. "
            "Lower the batch size or sequence length, or choose more text."
        )
    if parameters > limits.max_parameters:
        problems.append(
            f"This model would have {parameters:,} parameters; this server allows {limits.max_parameters:,}. "
            "Choose a smaller rnn_size or fewer layers."
        )
    return problems


def start_run(config: Config, resume: bool = False) -> None:
    chosen, missing = chosen_corpus()
    if chosen is None:
        st.session_state["train_error"] = missing
        return
    dataset = services.dataset_for(chosen.key, chosen.tokens, config.min_word_freq, config.split_fractions)
    previous: TrainingRun | None = st.session_state.get(state.RUN)
    checkpoint = previous.result_checkpoint if resume and previous is not None else None
    try:
        run = TrainingRun(checkpoint.config if checkpoint else config, dataset, services.limits(), resume=checkpoint)
        run.start()
    except (CapacityError, ValueError) as error:
        st.session_state["train_error"] = str(error)
        return
    st.session_state["train_error"] = None
    st.session_state[state.RUN] = run
    st.session_state[state.SNAPSHOT] = None


def stop_run() -> None:
    run: TrainingRun | None = st.session_state.get(state.RUN)
    if run is not None:
        run.stop()


def controls_section(config: Config | None, problems: list[str]) -> None:
    run: TrainingRun | None = st.session_state.get(state.RUN)
    running = run is not None and run.running
    can_resume = run is not None and not running and run.result_checkpoint is not None and run.status != "finished"
    start, stop, resume = st.columns(3)
    start.button(
        "Start training",
        type="primary",
        disabled=running or bool(problems),
        on_click=start_run,
        args=(config,),
        width="stretch",
    )
    stop.button("Stop", disabled=not running, on_click=stop_run, width="stretch")
    resume.button(
        "Resume", disabled=not can_resume, on_click=start_run, args=(config,), kwargs={"resume": True}, width="stretch"
    )
    if st.session_state.get("train_error"):
        st.error(st.session_state["train_error"])


def samples_table(events: list) -> pd.DataFrame:
    rows = [{"step": e.step, **e.samples} for e in events if isinstance(e, SampleEvent)]
    return pd.DataFrame(rows[::-1])


def live_section() -> None:
    run: TrainingRun | None = st.session_state.get(state.RUN)
    if run is None:
        st.info("No training run yet: choose a preset or settings above, then press Start training.")
        return
    run.touch()
    events = run.events()
    steps = [e for e in events if isinstance(e, StepEvent)]
    evals = [e for e in events if isinstance(e, EvalEvent)]
    last = steps[-1] if steps else None
    total = run.trainer.total_steps
    done = last.step if last else run.trainer.step
    st.progress(min(1.0, done / max(1, total)), text=f"{STATUS_TEXT[run.status]} step {done:,} of {total:,}")
    columns = st.columns(5)
    columns[0].metric("Training loss", f"{last.loss:.3f}" if last else "-")
    columns[1].metric("Validation perplexity", f"{evals[-1].perplexity:,.1f}" if evals else "-")
    columns[2].metric("Words per second", f"{last.tokens_per_s:,.0f}" if last else "-")
    columns[3].metric("Elapsed", _duration(last.elapsed_s) if last else "-")
    columns[4].metric("Time left", _duration(last.eta_s) if last and run.running else "-")
    if run.status == "failed":
        st.error(f"Training failed: {run.error}")
    if steps:
        left, right = st.columns(2)
        # Titles as text above the charts: a Vega title next to a chart with a legend was clipped.
        left.markdown("**Loss**")
        left.altair_chart(charts.loss_chart(events), width="stretch")
        right.markdown("**Validation perplexity**")
        right.altair_chart(charts.perplexity_chart(events), width="stretch")
    table = samples_table(events)
    if not table.empty:
        st.caption("What the model writes for the recipe's prime texts (greedy), newest first")
        st.dataframe(table, hide_index=True, width="stretch")
    if st.session_state.get("_was_running") and not run.running:
        st.session_state["_was_running"] = False
        st.rerun()  # refresh the whole page: buttons, summary and download
    st.session_state["_was_running"] = run.running


def result_section() -> None:
    run: TrainingRun | None = st.session_state.get(state.RUN)
    if run is None or run.running or run.result_checkpoint is None:
        return
    checkpoint = run.result_checkpoint
    key = f"run-{run.id}-{checkpoint.step}"
    if state.my_model() is None or state.my_model()[2] != key:
        label = f"run {run.id}, {checkpoint.step:,} steps"
        state.set_my_model(checkpoint.without_training_state(), label, key)
    val = checkpoint.progress.get("last_val_loss")
    ppl = f"{math.exp(val):,.1f}" if val is not None else "-"
    st.success(
        f"{STATUS_TEXT[run.status]} {checkpoint.step:,} steps in {_duration(checkpoint.progress.get('elapsed_s', 0))}; "
        f"final validation perplexity {ppl}. The Generate page now uses this model."
    )
    st.download_button(
        "Download the model (.pt)",
        data=lambda: checkpoint.without_training_state().to_bytes(),
        file_name=f"lstm-playhouse-{checkpoint.step}-steps.pt",
        mime="application/octet-stream",
        key="download_model",
    )


def upload_model_section() -> None:
    with st.expander("Load a model you downloaded before"):
        uploaded = st.file_uploader("Model file (.pt)", type=["pt"], key="model_upload")
        if uploaded is None:
            return
        data = uploaded.getvalue()
        key = "upload-" + services.digest(data)
        if state.my_model() is not None and state.my_model()[2] == key:
            st.success(f"Loaded {uploaded.name}: the Generate page uses it.")
            return
        try:
            checkpoint = load_checkpoint(data, name=uploaded.name)
        except CheckpointError as error:
            st.error(str(error))
            return
        state.set_my_model(checkpoint.without_training_state(), f"{uploaded.name} ({checkpoint.step:,} steps)", key)
        st.success(f"Loaded {uploaded.name}: the Generate page uses it.")


st.title("🏋️ Train")
chosen, missing = chosen_corpus()
if chosen is None:
    st.warning(missing)
    st.stop()
stats = services.word_stats(chosen.key, chosen.tokens)
settings_section()
config, problems = state.current_config()
vocab_counts = stats.vocab_counts(config.min_word_freq) if config else []
parameters = count_parameters(config, len(vocab_counts), vocab_counts) if config else 0
problems = check_settings(config, list(problems), stats.tokens, parameters)
if config is not None:
    st.caption(
        f"Text: {chosen.corpus.name}, {stats.tokens:,} words, vocabulary {len(vocab_counts):,}. "
        f"Model: {services.config_summary(config)}, {parameters:,} parameters. "
        f"Runs training on this server now: {REGISTRY.active}."
    )
for problem in problems:
    st.error(problem)
controls_section(config, problems)
run = st.session_state.get(state.RUN)
st.fragment(run_every=2.0 if run is not None and run.running else None)(live_section)()
result_section()
upload_model_section()
