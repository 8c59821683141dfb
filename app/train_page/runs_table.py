"""The visitor's runs: a table of them, the choice of the run on show, and runs compared on one
chart against training time."""

from __future__ import annotations

import time
from typing import Any

import pandas as pd
import streamlit as st

from app import charts, services, state
from app.train_page.controls import visitor_runs
from app.train_page.labels import PRESET_LABELS, duration
from lstm_core.config import CELL_NAMES, PRESETS, Config
from lstm_core.errors import InputError
from lstm_core.runs import folder as run_files
from lstm_core.training.events import EvalEvent


def recipe(config: dict[str, Any]) -> str:
    """A run's settings as a visitor chose them: the nearest preset, with what was changed
    ("Quick", "Quick, plain RNN", "Best, epochs 2, dropout 0.2"); the model itself (its cell
    included) when more than three changed."""
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
    said = {"cell": CELL_NAMES[chosen.cell]}  # "Quick, GRU" rather than "Quick, cell gru"
    changed = ", ".join(said.get(field, f"{field} {getattr(chosen, field)}") for field in changes[nearest])
    return ", ".join(filter(None, [PRESET_LABELS.get(nearest, nearest), changed]))


def run_labels(found: list[run_files.RunSummary]) -> dict[str, str]:
    """``{run id: "12 Mar 14:05, Quick"}``, made unique with the run's id where two would read the same."""
    labels = {
        run.id: f"{time.strftime('%d %b %H:%M', time.localtime(run.created))}, {recipe(run.config)}" for run in found
    }
    seen = list(labels.values())
    return {run_id: f"{label} ({run_id[-4:]})" if seen.count(label) > 1 else label for run_id, label in labels.items()}


def runs_section(current: run_files.RunSummary | None) -> None:
    """The table of the visitor's runs; with two or more, the choice of the run on show and the
    runs to compare."""
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
            "training time": duration(run.elapsed_s) if run.step else "-",
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
    compared = st.session_state.get(state.COMPARE_RUNS, [])
    if any(run_id not in ids for run_id in compared):  # deleted since (runs are kept for a limited time)
        # Written only then: a value written on every redraw is sent to the browser as new each time,
        # over a choice the visitor may be making (recent Streamlit drops missing options itself;
        # the older versions requirements.txt allows may not).
        st.session_state[state.COMPARE_RUNS] = [run_id for run_id in compared if run_id in ids]
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
