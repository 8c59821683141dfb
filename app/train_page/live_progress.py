"""The run on show as it trains: its progress, figures, charts and samples, and with them the
result and the table of runs, redrawn together every two seconds while it trains.

The page draws :func:`run_sections` in an ``st.fragment`` with ``run_every``: only this part of
the page is redrawn by the timer, so what the table says about a run is what the progress bar
above it says.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import charts, services, state
from app.train_page.controls import current_run
from app.train_page.labels import duration, status_text
from app.train_page.result import result_section
from app.train_page.runs_table import runs_section
from lstm_core.errors import InputError
from lstm_core.evaluation.standing import overfitting, standing
from lstm_core.runs import folder as run_files
from lstm_core.training.events import CheckpointEvent, EvalEvent, Event, SampleEvent, StepEvent

# The samples table keeps one height from the run's first step (it scrolls past four rows): grown
# by a row at each evaluation, it pushed the runs table below down every time, and the browser's
# scroll to keep the view in place closed any list a visitor had open there.
SAMPLES_HEIGHT = 5 * 35 + 3  # a header and four rows of 35 pixels, and the frame


def run_sections(shown: str | None) -> None:
    """The live progress, the result and the runs table of the run on show.

    ``shown`` is the id of the run the rest of the page (its buttons) was drawn for. When the run
    on show is another (chosen in the table's chooser, or started in another tab), the whole page
    is drawn again, so that Stop and Resume act on the run shown here.
    """
    run = current_run()
    if (run.id if run is not None else None) != shown:
        st.rerun(scope="app")
    live_section(run)
    result_section(run)
    runs_section(run)


def samples_table(events: list[Event]) -> pd.DataFrame:
    """What the model wrote for each prime text at each evaluation, newest first (a row per step)."""
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


def live_section(run: run_files.RunSummary | None) -> None:
    """The progress bar, the figures, where the run stands, its charts and its samples."""
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
    st.progress(min(1.0, done / max(1, total)), text=f"{status_text(run.state)} step {done:,} of {total:,}")
    columns = st.columns(5)
    columns[0].metric("Training loss", f"{last.loss:.3f}" if last else "-")
    columns[1].metric("Validation perplexity", f"{evals[-1].perplexity:,.1f}" if evals else "-")
    columns[2].metric("Words per second", f"{last.tokens_per_s:,.0f}" if last else "-")
    columns[3].metric("Elapsed", duration(run.elapsed_s) if run.step else "-")
    columns[4].metric("Time left", duration(last.eta_s) if last and run.active else "-")
    if run.state == "unreachable":
        st.warning(
            f"{run.message[:1].upper()}{run.message[1:]}. The run may still be training there: it shows as it last "
            "reported, Stop still reaches it (through its folder), and it can be resumed once the cluster answers."
        )
    elif run.active and run.message:
        st.caption(f"Note: {run.message}.")
    if run.ended_unexpectedly or run.state == "diverged":
        saved = [e.step for e in events if isinstance(e, CheckpointEvent) and not e.best]
        kept = (
            f" Its last checkpoint (step {saved[-1] if saved else run.step:,}) is kept: resume the run or "
            "download it below."
            if run.has_last
            else " It had not saved a checkpoint yet."
        )
        st.error(f"{status_text(run.state)} {run.message}.{kept}")
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
    if table.empty and run.active and steps:  # its place is kept from the first step: the page below stays put
        table = pd.DataFrame(columns=["step", *run.config.get("prime_texts", [])])
    if len(table.columns):
        st.caption("What the model writes for the recipe's prime texts (greedy), newest first")
        st.dataframe(table, hide_index=True, width="stretch", height=SAMPLES_HEIGHT)
    if st.session_state.get(state.WAS_RUNNING) and not run.active:
        st.session_state[state.WAS_RUNNING] = False
        st.rerun()  # refresh the whole page: buttons, summary and download
    st.session_state[state.WAS_RUNNING] = run.active
