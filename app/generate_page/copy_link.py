"""The Generate page's "Copy link": this result's address without the private key, and sharing the
visitor's own model first when the text comes from it (``app/share.py`` makes the links)."""

from __future__ import annotations

import streamlit as st

from app import share, state
from app.models import ModelEntry
from app.visitor import data_root


def share_section(entry: ModelEntry) -> None:
    """The "Copy link" popover: the link, or the button that shares the visitor's own model."""
    with st.popover("🔗 Copy link"):
        choice: str | None = st.session_state.get(state.MODEL_CHOICE)
        if entry.source not in ("demo", "shared"):
            shared = share.existing_share(state.workspace().folder, entry.key)
            if shared is None:
                st.write(
                    "This text comes from **your own model**, which only your workspace can open. To give others a "
                    "link, share the model first: a read-only copy of its weights gets a link of its own, which "
                    "shows nothing else of yours."
                )
                st.button("Share this model", on_click=share_own_model, args=(entry,), type="primary")
                choice = None
            else:
                choice = share.SHARE_PREFIX + shared
        if choice is not None:
            # Every setting spelled out, defaults too: the link means the same if the page's defaults change.
            settings = {
                key: share.address_text(key, st.session_state[key]) for key in share.PARAMS if key in st.session_state
            }
            link = share.share_link(st.context.url, settings, choice)
            st.write("Anyone who opens this link sees this result, word for word (the seed is in it):")
            st.code(link, language=None, wrap_lines=True)
        st.caption(
            "This page's own address is **private**: its `k=` part is your workspace key, which opens your runs and "
            "models. Share the link above instead."
        )


def share_own_model(entry: ModelEntry) -> None:
    """Share the visitor's model (a button's callback): a read-only copy with a link of its own."""
    assert entry.checkpoint is not None, "only a model from a file is shared"
    label = entry.label.removeprefix("Your run of ").removeprefix("Uploaded: ")
    share.share_model(data_root(), state.workspace().folder, entry.key, entry.checkpoint, label)
