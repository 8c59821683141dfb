"""LSTM Playhouse: the Streamlit app's entry point (``streamlit run streamlit_app.py``).

Sets up the page and the visitor's workspace (from the ``?k=`` key in the address), shows the
training status in the sidebar on every page, hands over to the page the visitor chose, and saves
the visitor's settings when the page is done. Then it starts the server's once-only background
work (:mod:`app.warmup`: importing what the other pages need, loading the demo model, clearing
out old runs) and, when ``LSTM_PLAYHOUSE_TIMING_LOG`` is set, logs the run's times
(:mod:`app.timing`). Nothing imported here imports torch: the first page needs none.
"""

import time
from functools import partial

import streamlit as st

from app import services, state, timing, warmup
from app.sidebar import training_status
from app.visitor import data_root
from lstm_core.errors import InputError
from lstm_core.runs.limits import SettingError
from lstm_core.runs.sweep import sweep

started = time.time()  # after the imports, which only the server's first run pays
cpu_started = time.thread_time()

st.set_page_config(page_title="LSTM Playhouse", page_icon="🎭", layout="wide")
try:
    limits = services.limits()  # read the server's caps (and thread setting) once
    services.runner()  # and where its runs train: local processes, or a Ray cluster
except SettingError as error:
    st.error(f"This server is misconfigured: {error}. Its operator can fix it in the environment or secrets file.")
    st.stop()
except InputError as error:  # a cgroup file that is not what the kernel writes: sizing runs by it could fail
    st.error(f"This server cannot tell what it may use, so it sizes nothing: {error}.")
    st.stop()
state.init()

pages = [
    st.Page("app/pages/data.py", title="Data", icon="📜", default=True),
    st.Page("app/pages/train.py", title="Train", icon="🏋️"),
    st.Page("app/pages/generate.py", title="Generate", icon="✒️"),
    st.Page("app/pages/inside.py", title="Inside the LSTM", icon="🔬"),
    st.Page("app/pages/about.py", title="About", icon="🎭"),
]
page = st.navigation(pages)
if page.title != "Train":  # a press of Start left behind by leaving the page must not start a run later
    st.session_state.pop(state.START_ASKED, None)
with st.sidebar:
    st.markdown("### 🎭 LSTM Playhouse")
    st.caption("Train a word-level LSTM on Shakespeare, watch it learn, make it write.")
    training_status()
    st.caption(
        "Your workspace is this page's address (its `?k=` part): keep it to come back to your runs and "
        "models, and share it only with people who may use them."
    )
try:
    page.run()
finally:
    state.save_settings()
    # Once per server, after its first page: import what the other pages need, give PyTorch the
    # server's thread count, load the demo model, clear out old runs (a walk over every visitor's folder).
    warmup.start(services.torch_threads, services.shipped_model, partial(sweep, data_root(), limits))
    timing.record(page.title, started, time.time(), time.thread_time() - cpu_started)
