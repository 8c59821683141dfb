"""The visitor's chosen text, shared by the Data and Train pages."""

from __future__ import annotations

import os

import streamlit as st

from app import services, state
from lstm_core.text.corpus import DEFAULT_GUTENBERG_URL, Corpus, gutenberg, gutenberg_cache_path, text_from_bytes


def gutenberg_url() -> str:
    return os.environ.get("LSTM_PLAYHOUSE_GUTENBERG_URL", DEFAULT_GUTENBERG_URL)


def chosen_text() -> tuple[services.Text | None, str | None]:
    """The text the visitor chose, or None and why it is not available yet."""
    source = st.session_state.get(state.CORPUS_SOURCE, "plays")
    if source == "gutenberg":
        url = gutenberg_url()
        if not gutenberg_cache_path(url).is_file():
            return None, "The Complete Works are not downloaded yet: download them on the Data page."
        return services.file_text(f"gutenberg:{url}", lambda: gutenberg(url)), None
    if source == "upload":
        upload = state.upload_choice()
        if upload is None or not upload.path.is_file():
            return None, "No text is uploaded yet: upload a .txt file on the Data page."
        return services.file_text(f"upload:{upload.digest}", lambda: _read_upload(upload)), None
    plays = tuple(st.session_state.get(state.CORPUS_PLAYS) or ())
    return services.plays_text(plays), None


def _read_upload(upload: state.Upload) -> Corpus:
    return text_from_bytes(upload.path.read_bytes(), name=upload.name)
