"""The Inside page's "Word vectors" tab: a word's nearest neighbours by cosine similarity, and the
most frequent words' vectors flattened onto their two main directions (PCA)."""

from __future__ import annotations

import pandas as pd
import streamlit as st
from torch import Tensor

from app import inside_charts as charts
from app import state
from app.models import ModelEntry
from lstm_core.explain.embeddings import nearest_words
from lstm_core.text.cleaning import tokenize
from lstm_core.text.vocab import Vocab


@st.cache_data(max_entries=8, show_spinner=False)
def word_map(model_key: str, _embedding: Tensor, _vocab: Vocab) -> pd.DataFrame:
    """The word-vector map of a model (``model_key`` names it; the weights are not hashed)."""
    return charts.pca_frame(_embedding, _vocab, charts.MAX_MAP_WORDS)


def vectors_tab(entry: ModelEntry) -> None:
    """A word's box and its neighbours' table on the left, the map on the right (the word and its
    neighbours named on it)."""
    embedding = entry.model.embedding.weight
    left, right = st.columns([1, 2])
    with left:
        word = st.text_input("A word", "king", key=state.INSIDE_WORD)
        neighbours: list[tuple[str, float]] = []
        try:
            neighbours = nearest_words(embedding, entry.vocab, word, k=10)
        except ValueError as error:
            st.warning(f"{error}. Try another word.")
        if neighbours:
            st.dataframe(
                pd.DataFrame(neighbours, columns=["neighbour", "cosine similarity"]),
                hide_index=True,
                column_config={"cosine similarity": st.column_config.NumberColumn(format="%.3f")},
            )
            st.caption("The words whose vectors point most nearly the same way (cosine similarity, 1 = same way).")
    with right:
        cleaned = tokenize(word)
        frame = word_map(entry.key, embedding, entry.vocab)
        chart = charts.pca_chart(frame, cleaned[0] if len(cleaned) == 1 else None, [w for w, _ in neighbours])
        st.altair_chart(chart, width="stretch")
        st.caption(
            f"The {len(frame)} most frequent words, their vectors flattened onto the two directions in which "
            "they differ most (PCA). Hover a point for its word; the word and its neighbours are named when "
            "they are among these."
        )
