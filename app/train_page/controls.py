"""Which run the Train page shows, and its Start, Stop and Resume buttons.

A run trains in a process of its own (``lstm_core/runs/control.py``); these only write to its folder or
start its process, and the page reads the folder back.
"""

from __future__ import annotations

import streamlit as st

from app import services, state
from app.visitor import data_root
from lstm_core.config import Config
from lstm_core.runs import control as runs
from lstm_core.runs import folder as run_files
from lstm_core.runs.runner import RunnerUnavailable

REFUSALS = (runs.CapacityError, ValueError, RunnerUnavailable, TimeoutError)
"""What a start or a resume may be refused with, each said to the visitor as it is."""


def visitor_runs() -> list[run_files.RunSummary]:
    """The visitor's runs, newest first."""
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


def ask_to_start() -> None:
    """Start's callback: only records the press; :func:`start_asked_run` starts the run.

    A callback runs before the page and, in a rerun that also carries other changes (a slider
    moved or a preset chosen just before the press), in no set order with their callbacks; its
    arguments are what the page was last drawn with. So the page starts the run once every setting
    of this rerun is in place, and a press made while an earlier rerun was still drawing is kept
    until a run of the page gets that far.
    """
    st.session_state[state.START_ASKED] = True


def start_asked_run(text: services.Text, config: Config | None, problems: list[str]) -> None:
    """Start a new run of ``config`` on ``text`` (the page's) if Start was pressed since the last
    run of the page; a refusal is kept in the session for the page to show."""
    if not st.session_state.get(state.START_ASKED):
        return
    if config is None or problems:
        st.session_state.pop(state.START_ASKED)
        st.session_state[state.TRAIN_ERROR] = "Not started: " + " ".join(problems)
        return
    # Preparing the data may draw a spinner, where a newer rerun can stop this one: the press is
    # kept until here, and from here on nothing yields until the run has started or been refused.
    dataset = services.dataset_for(text, config.min_word_freq, config.split_fractions)
    st.session_state.pop(state.START_ASKED)
    try:
        run = runs.start_run(data_root(), state.workspace().runs, config, dataset, services.limits(), services.runner())
    except REFUSALS as error:
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
        runs.resume_run(data_root(), run, services.limits(), services.runner())
    except REFUSALS as error:
        st.session_state[state.TRAIN_ERROR] = str(error)
        return
    st.session_state[state.TRAIN_ERROR] = None
    services.runs_training_now.clear()


def stop_run(run_id: str) -> None:
    """Ask the run's process to stop (it saves a checkpoint first)."""
    run = run_files.read_run(state.workspace().runs / run_id)
    if run is not None:
        runs.stop_run(run, services.runner())


def controls_section(problems: list[str], run: run_files.RunSummary | None) -> None:
    """Start (a new run of the settings shown: see :func:`start_asked_run`), Stop and Resume (the
    run on show), each enabled only when it can act, and the last refusal."""
    active = run is not None and run.active
    # Where this server cannot train, say why in its own words (what it has), not the core's.
    host_problem = services.training_problem() if run is not None and not active else None
    resume_problem = host_problem or (runs.resume_problem(run, services.limits()) if run is not None else "no run")
    start, stop, resume = st.columns(3)
    start.button(
        "Start training",
        type="primary",
        disabled=active or bool(problems),
        on_click=ask_to_start,
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
