"""Train page: settings, start / stop / resume, and live charts of the visitor's run.

The run trains in a process of its own (see ``lstm_core/runs/control.py``); this page only reads the run's
folder, so a reload, another tab or a server restart shows the same run. Its parts are in
``app/train_page/``.
"""

from __future__ import annotations

import streamlit as st

from app import state
from app.corpus_state import chosen_text
from app.train_page.controls import controls_section, current_run, start_asked_run
from app.train_page.live_progress import run_sections
from app.train_page.model_upload import upload_model_section
from app.train_page.settings_form import check_settings, settings_section, summary_caption

st.title("🏋️ Train")
text, missing = chosen_text()
if text is None:
    st.warning(missing)
    st.session_state.pop(state.START_ASKED, None)
    st.stop()
settings_section()
config, problems = state.current_config()
vocab_counts = text.encoded.vocab_counts(config.min_word_freq) if config else []
problems = check_settings(config, list(problems), text, vocab_counts)
if config is not None:
    summary_caption(config, text, vocab_counts)
for problem in problems:
    st.error(problem)
start_asked_run(text, config, problems)
run = current_run()
controls_section(problems, run)
# The progress, the result and the runs table refresh together, every two seconds while the run trains.
st.fragment(run_every=2.0 if run is not None and run.active else None)(run_sections)(run.id if run else None)
upload_model_section()
