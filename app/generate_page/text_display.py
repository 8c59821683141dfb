"""A prime and its continuation as the Generate page's tabs show them: the prime in bold, in a
serif face (the ``generated`` class is what the browser tests read)."""

from __future__ import annotations

import html

import streamlit as st


def show_text(prime_words: list[str], words: list[str], note: str = "") -> None:
    """The prime's words in bold, then the continuation's; ``note`` as a caption under them."""
    prime = html.escape(" ".join(prime_words))
    rest = html.escape(" ".join(words))
    st.markdown(
        f'<div class="generated" style="font-family: Georgia, serif; font-size: 1.25rem; line-height: 1.7;">'
        f"<b>{prime}</b> {rest}</div>",
        unsafe_allow_html=True,
    )
    if note:
        st.caption(note)
