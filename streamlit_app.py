"""LSTM Playhouse: the Streamlit app's entry point."""

import streamlit as st

st.set_page_config(page_title="LSTM Playhouse", page_icon="🎭")
st.title("LSTM Playhouse")
st.write("Train a word-level LSTM on Shakespeare, watch it learn, and make it write.")
