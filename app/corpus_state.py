"""The visitor's chosen corpus, shared by the Data and Train pages."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from app import services, state
from lstm_core.corpus import Corpus


@dataclass(frozen=True)
class ChosenCorpus:
    key: str
    corpus: Corpus
    tokens: list[str]


def chosen_corpus() -> tuple[ChosenCorpus | None, str | None]:
    """The corpus the visitor chose, with its words, or None and why it is not available yet."""
    source = st.session_state.get(state.CORPUS_SOURCE, "plays")
    if source == "gutenberg":
        corpus = st.session_state.get(state.GUTENBERG)
        if corpus is None:
            return None, "The Complete Works are not downloaded yet: download them on the Data page."
        key = "gutenberg"
    elif source == "upload":
        upload = st.session_state.get(state.UPLOAD)
        if upload is None:
            return None, "No text is uploaded yet: upload a .txt file on the Data page."
        corpus = upload["corpus"]
        key = "upload:" + upload["digest"]
    else:
        plays = tuple(st.session_state.get(state.CORPUS_PLAYS) or ())
        corpus = services.plays_corpus(plays)
        key = "plays:" + (",".join(plays) or "all")
    return ChosenCorpus(key, corpus, services.corpus_tokens(key, corpus.text)), None
