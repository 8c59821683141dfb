"""Train page: settings, start / stop / resume, and live charts of the visitor's run.

The run trains in a process of its own (see ``app/run_control.py``); this page only reads the run's
folder, so a reload, another tab or a server restart shows the same run.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

import pandas as pd
import streamlit as st

from app import charts, services, state, widgets
from app import run_control as runs
from app.corpus_state import chosen_text
from app.visitor import KEY_PARAM, data_root
from lstm_core.config import PRESET_HELP, PRESETS, Config
from lstm_core.data.batching import min_tokens
from lstm_core.errors import InputError
from lstm_core.evaluation.standing import overfitting, standing
from lstm_core.files import atomic_write
from lstm_core.model.checkpoint import CheckpointError, load_checkpoint
from lstm_core.model.memory import estimate_memory, format_bytes
from lstm_core.model.network import count_parameters
from lstm_core.runs import folder as run_files
from lstm_core.training.trainer import CheckpointEvent, EvalEvent, SampleEvent, StepEvent

PRESET_LABELS = {"cookbook": "Cookbook recipe", "quick": "Quick", "default": "Best", "gpu": "GPU"}
STATUS_TEXT = {
    "starting": "Starting...",
    "running": "Training...",
    "finished": "Finished.",
    "stopped": "Stopped. You can resume it.",
    "time_limit": "Stopped at this server's time limit.",
    "idle": "Stopped because no page was watching it. You can resume it.",
    "interrupted": "Interrupted (the server was stopping). You can resume it.",
    "diverged": "Stopped: the loss diverged.",
    "out_of_memory": "Ended: it went over its memory limit.",
    "failed": "Failed.",
    "crashed": "Ended unexpectedly.",
}


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = round(seconds)
    return f"{seconds // 60}m {seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def settings_section() -> None:
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
    """Everything that would stop a run from starting, in plain words."""
    if config is None:
        return problems
    train_tokens = int(text.encoded.tokens * config.split_fractions[0])
    needed = min_tokens(config.batch_size, config.training_seq_len)
    if train_tokens < needed:
        problems.append(
            f"The training part of this text has {train_tokens:,} words; batch_size {config.batch_size} x "
            f"(training_seq_len {config.training_seq_len} + 1) needs at least {needed:,}. "
            "Lower the batch size or sequence length, or choose more text."
        )
    return problems + runs.admission_problems(config, vocab_counts, text.encoded.tokens, services.limits())


# ---- the visitor's runs ------------------------------------------------------------------------


def visitor_runs() -> list[run_files.RunSummary]:
    return run_files.list_runs(state.workspace().runs)


def current_run() -> run_files.RunSummary | None:
    """The run on show: the one chosen, else the visitor's newest."""
    chosen = state.current_run_id()
    if chosen is not None:
        run = run_files.read_run(state.workspace().runs / chosen)
        if run is not None:
            return run
    found = visitor_runs()
    return found[0] if found else None


def start_run(config: Config) -> None:
    text, missing = chosen_text()
    if text is None:
        st.session_state[state.TRAIN_ERROR] = missing
        return
    dataset = services.dataset_for(text, config.min_word_freq, config.split_fractions)
    try:
        run = runs.start_run(data_root(), state.workspace().runs, config, dataset, services.limits())
    except (runs.CapacityError, ValueError) as error:
        st.session_state[state.TRAIN_ERROR] = str(error)
        return
    st.session_state[state.TRAIN_ERROR] = None
    state.set_current_run(run.id)
    services.runs_training_now.clear()


def resume_run(run_id: str) -> None:
    """Continue the run with its own config and data, whatever the widgets show now."""
    run = run_files.read_run(state.workspace().runs / run_id)
    if run is None:
        st.session_state[state.TRAIN_ERROR] = "That run is gone (runs are kept for a limited time)."
        return
    try:
        runs.resume_run(data_root(), run, services.limits())
    except (runs.CapacityError, ValueError) as error:
        st.session_state[state.TRAIN_ERROR] = str(error)
        return
    st.session_state[state.TRAIN_ERROR] = None
    services.runs_training_now.clear()


def stop_run(run_id: str) -> None:
    run = run_files.read_run(state.workspace().runs / run_id)
    if run is not None:
        runs.stop_run(run)


def controls_section(config: Config | None, problems: list[str], run: run_files.RunSummary | None) -> None:
    active = run is not None and run.active
    resume_problem = runs.resume_problem(run, services.limits()) if run is not None else "no run"
    start, stop, resume = st.columns(3)
    start.button(
        "Start training",
        type="primary",
        disabled=active or bool(problems),
        on_click=start_run,
        args=(config,),
        width="stretch",
    )
    stop.button("Stop", disabled=not active, on_click=stop_run, args=(run.id if run else "",), width="stretch")
    resume.button(
        "Resume",
        disabled=resume_problem is not None,
        on_click=resume_run,
        args=(run.id if run else "",),
        help=resume_problem if run is not None and not active and resume_problem else None,
        width="stretch",
    )
    if st.session_state.get(state.TRAIN_ERROR):
        st.error(st.session_state[state.TRAIN_ERROR])


def samples_table(events: list) -> pd.DataFrame:
    rows = [{"step": e.step, **e.samples} for e in events if isinstance(e, SampleEvent)]
    return pd.DataFrame(rows[::-1])


def standing_section(run: run_files.RunSummary, steps: list[StepEvent], evals: list[EvalEvent]) -> None:
    """One sentence on where the run stands: the baselines it beat and when, and overfitting."""
    if not evals:
        if run.active:
            st.caption(
                "Not evaluated yet: where the run stands against the baselines shows after its first evaluation."
            )
        return
    history = [{"step": e.step, "elapsed_s": e.elapsed_s, "perplexity": e.perplexity} for e in evals]
    losses = [{"step": e.step, "loss": e.loss} for e in steps]
    try:
        sentence = standing(history, losses, run_files.read_baselines(run.path))
        rising = overfitting(history, losses)
    except InputError:  # a damaged events file: the charts still show what could be read
        return
    (st.warning if rising else st.markdown)(sentence)


def live_section() -> None:
    run = current_run()
    if run is None:
        st.info("No training run yet: choose a preset or settings above, then press Start training.")
        return
    if run.active:
        run_files.touch_heartbeat(run.path)  # someone is watching: keep training
    events = services.event_tail(str(run.path / run_files.EVENTS_FILE)).read()
    steps = [e for e in events if isinstance(e, StepEvent)]
    evals = [e for e in events if isinstance(e, EvalEvent)]
    last = steps[-1] if steps else None
    total = run.total_steps or (last.total_steps if last else 0)
    done = run.step
    st.progress(
        min(1.0, done / max(1, total)),
        text=f"{STATUS_TEXT.get(run.state, run.state)} step {done:,} of {total:,}",
    )
    columns = st.columns(5)
    columns[0].metric("Training loss", f"{last.loss:.3f}" if last else "-")
    columns[1].metric("Validation perplexity", f"{evals[-1].perplexity:,.1f}" if evals else "-")
    columns[2].metric("Words per second", f"{last.tokens_per_s:,.0f}" if last else "-")
    columns[3].metric("Elapsed", _duration(run.elapsed_s) if run.step else "-")
    columns[4].metric("Time left", _duration(last.eta_s) if last and run.active else "-")
    if run.active and run.message:
        st.caption(f"Note: {run.message}.")
    if run.ended_unexpectedly or run.state == "diverged":
        saved = [e.step for e in events if isinstance(e, CheckpointEvent) and not e.best]
        kept = (
            f" Its last checkpoint (step {saved[-1] if saved else run.step:,}) is kept: resume the run or "
            "download it below."
            if run.has_last
            else " It had not saved a checkpoint yet."
        )
        st.error(f"{STATUS_TEXT.get(run.state, run.state)} {run.message}.{kept}")
    standing_section(run, steps, evals)
    if steps:
        left, right = st.columns(2)
        # Titles as text above the charts: a Vega title next to a chart with a legend was clipped.
        left.markdown("**Loss**")
        left.altair_chart(charts.loss_chart(events), width="stretch")
        right.markdown("**Validation perplexity**, against the baselines (dashed)")
        baselines = run_files.read_baselines(run.path)
        right.altair_chart(charts.perplexity_chart(events, baselines), width="stretch")
    table = samples_table(events)
    if not table.empty:
        st.caption("What the model writes for the recipe's prime texts (greedy), newest first")
        st.dataframe(table, hide_index=True, width="stretch")
    if st.session_state.get(state.WAS_RUNNING) and not run.active:
        st.session_state[state.WAS_RUNNING] = False
        st.rerun()  # refresh the whole page: buttons, summary and download
    st.session_state[state.WAS_RUNNING] = run.active


def _model_file(run: run_files.RunSummary) -> bytes:
    path = run.checkpoint
    assert path is not None
    return load_checkpoint(path).without_training_state().to_bytes()


def result_section(run: run_files.RunSummary | None) -> None:
    if run is None or run.active or run.checkpoint is None:
        return
    perplexity = f"{run.last_perplexity:,.1f}" if run.last_perplexity is not None else "-"
    if not run.ended_unexpectedly:
        summary = (
            f"{STATUS_TEXT.get(run.state, run.state)} {run.step:,} steps in {_duration(run.elapsed_s)}; "
            f"final validation perplexity {perplexity}."
        )
        (st.success if run.state == "finished" else st.info)(summary)
    if st.button("✒️ Write with this model", key=state.WRITE_WITH_RUN, type="primary"):
        st.switch_page(
            "app/pages/generate.py",
            query_params={state.MODEL_CHOICE: f"run:{run.id}", KEY_PARAM: state.workspace().key},
        )
    st.download_button(
        "Download the model (.pt)",
        data=lambda: _model_file(run),
        file_name=f"lstm-playhouse-{run.id}.pt",
        mime="application/octet-stream",
        key=state.DOWNLOAD_MODEL,
        help="The best weights of this run (model only), with its config and vocabulary.",
    )


def recipe(config: dict[str, Any]) -> str:
    """A run's settings as a visitor chose them: the nearest preset, with what was changed
    ("Quick", "Best, epochs 2, dropout 0.2"); the model itself when more than three changed."""
    try:
        chosen = Config.from_dict(config) if config else None
    except InputError:
        chosen = None
    if chosen is None:
        return "?"
    changes = {
        name: [field for field in state.UI_FIELDS if getattr(chosen, field) != getattr(preset, field)]
        for name, preset in PRESETS.items()
    }
    nearest = min(changes, key=lambda name: len(changes[name]))
    if len(changes[nearest]) > 3:
        return services.config_summary(chosen)
    changed = ", ".join(f"{field} {getattr(chosen, field)}" for field in changes[nearest])
    return ", ".join(filter(None, [PRESET_LABELS.get(nearest, nearest), changed]))


def run_labels(found: list[run_files.RunSummary]) -> dict[str, str]:
    """``{run id: "12 Mar 14:05, Quick"}``, made unique with the run's id where two would read the same."""
    labels = {
        run.id: f"{time.strftime('%d %b %H:%M', time.localtime(run.created))}, {recipe(run.config)}" for run in found
    }
    seen = list(labels.values())
    return {run_id: f"{label} ({run_id[-4:]})" if seen.count(label) > 1 else label for run_id, label in labels.items()}


def runs_section(current: run_files.RunSummary | None) -> None:
    found = visitor_runs()
    if not found:
        return
    st.subheader("Your runs")
    rows = [
        {
            "started": time.strftime("%Y-%m-%d %H:%M", time.localtime(run.created)),
            "settings": recipe(run.config),
            "text": str(run.dataset.get("name", "?")),
            "state": run.state.replace("_", " "),
            "steps": f"{run.step:,} of {run.total_steps:,}",
            "training time": _duration(run.elapsed_s) if run.step else "-",
            "best perplexity": f"{run.best_perplexity:,.1f}" if run.best_perplexity else "-",
        }
        for run in found
    ]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    if len(found) < 2:
        return
    ids = [run.id for run in found]
    labels = run_labels(found)
    st.selectbox(
        "Show this run above",
        ids,
        index=ids.index(current.id) if current is not None and current.id in ids else 0,
        format_func=lambda run_id: f"{labels[run_id]} ({rows[ids.index(run_id)]['state']})",
        key=state.RUN_CHOICE,
        on_change=lambda: state.set_current_run(st.session_state[state.RUN_CHOICE]),
    )
    if state.COMPARE_RUNS in st.session_state:  # runs deleted since (kept for a limited time) drop out
        st.session_state[state.COMPARE_RUNS] = [i for i in st.session_state[state.COMPARE_RUNS] if i in ids]
    chosen = st.multiselect(
        "Compare runs on one chart",
        ids,
        format_func=lambda key: labels[key],
        key=state.COMPARE_RUNS,
        placeholder="Choose two or more runs",
    )
    if len(chosen) == 1:
        st.caption("Choose one more run to draw them together.")
    elif len(chosen) >= 2:
        by_id = {run.id: run for run in found}
        compare_chart([by_id[run_id] for run_id in chosen], labels)


def compare_chart(chosen: list[run_files.RunSummary], labels: dict[str, str]) -> None:
    """The chosen runs' validation perplexity against training time, with the first run's
    baselines when every run trained on the same data (so the same vocabulary and validation text)."""
    curves = []
    for run in chosen:
        events = services.event_tail(str(run.path / run_files.EVENTS_FILE)).read()
        curves.append((labels[run.id], [e for e in events if isinstance(e, EvalEvent)]))
    same_data = all(run.dataset == chosen[0].dataset for run in chosen)
    baselines = run_files.read_baselines(chosen[0].path) if same_data else []
    st.altair_chart(charts.runs_chart(curves, baselines), width="stretch")
    note = (
        "Validation perplexity against training time: settings take steps of different sizes and costs, "
        "so time is the fair comparison. Hover a point for its run, step, time and perplexity."
    )
    if not same_data:
        note += (
            " These runs trained on different texts or vocabularies: their perplexities do not compare exactly, "
            "and no baselines are drawn."
        )
    st.caption(note)


def upload_model_section() -> None:
    with st.expander("Load a model you downloaded before"):
        uploaded = st.file_uploader("Model file (.pt)", type=["pt"], key=state.MODEL_UPLOAD)
        if uploaded is None:
            return
        data = uploaded.getvalue()
        digest = services.digest(data)
        path = state.workspace().models / f"{digest}.pt"
        if path.is_file():
            st.success(f"Loaded {uploaded.name}: the Generate page can use it.")
            return
        refused = state.refused_upload(digest)
        if refused is None:
            try:
                load_checkpoint(data, name=uploaded.name, limits=services.upload_limits())
            except CheckpointError as error:
                refused = str(error)
                state.remember_refused_upload(digest, refused)
        if refused is not None:
            st.error(refused)
            return
        atomic_write(path.with_suffix(".json"), lambda file: file.write(json.dumps({"name": uploaded.name}).encode()))
        atomic_write(path, lambda file: file.write(data))
        st.success(f"Loaded {uploaded.name}: the Generate page can use it.")


st.title("🏋️ Train")
text, missing = chosen_text()
if text is None:
    st.warning(missing)
    st.stop()
settings_section()
config, problems = state.current_config()
vocab_counts = text.encoded.vocab_counts(config.min_word_freq) if config else []
problems = check_settings(config, list(problems), text, vocab_counts)
if config is not None:
    parameters = count_parameters(config, len(vocab_counts), vocab_counts)
    memory = estimate_memory(config, vocab_counts, text.encoded.tokens, parameters)
    limits = services.limits()
    st.caption(
        f"Text: {text.name}, {text.encoded.tokens:,} words, vocabulary {len(vocab_counts):,}. "
        f"Model: {services.config_summary(config)}, {parameters:,} parameters; training needs about "
        f"{format_bytes(memory.total)} of the {format_bytes(limits.run_memory_mb * 1e6)} a run may use here. "
        f"Runs training on this server now: {services.runs_training_now()} of {limits.max_runs}."
    )
for problem in problems:
    st.error(problem)
run = current_run()
controls_section(config, problems, run)
st.fragment(run_every=2.0 if run is not None and run.active else None)(live_section)()
result_section(run)
runs_section(run)
upload_model_section()
