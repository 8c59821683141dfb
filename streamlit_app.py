"""LSTM Playhouse: the Streamlit app's entry point (``streamlit run streamlit_app.py``).

Sets up the page and the visitor's session, shows the training status in the sidebar on every
page, and hands over to the page the visitor chose.
"""

import streamlit as st

from app import services, state
from app.sidebar import training_status

st.set_page_config(page_title="LSTM Playhouse", page_icon="🎭", layout="wide")
state.init()
services.limits()  # read the server's caps (and thread setting) once

pages = [
    st.Page("app/pages/data.py", title="Data", icon="📜", default=True),
    st.Page("app/pages/train.py", title="Train", icon="🏋️"),
    st.Page("app/pages/generate.py", title="Generate", icon="✒️"),
    st.Page("app/pages/inside.py", title="Inside the LSTM", icon="🔬"),
    st.Page("app/pages/about.py", title="About", icon="🎭"),
]
page = st.navigation(pages)
with st.sidebar:
    st.markdown("### 🎭 LSTM Playhouse")
    st.caption("Train a word-level LSTM on Shakespeare, watch it learn, make it write.")
    training_status()
page.run()
