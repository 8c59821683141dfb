"""Data page: choose the text, and see what the cleaning and the vocabulary make of it."""

from __future__ import annotations

import streamlit as st

from app import services, state
from app.corpus_state import chosen_text, gutenberg_url
from lstm_core.files import atomic_write
from lstm_core.text.cleaning import tokenize
from lstm_core.text.corpus import CorpusError, gutenberg, gutenberg_cache_path, text_from_bytes

SOURCES = {
    "plays": "Bundled plays (offline)",
    "gutenberg": "Complete Works (Project Gutenberg)",
    "upload": "Your own text",
}
UPLOAD_LIMIT_MB = int(st.get_option("server.maxUploadSize"))


def use_plays() -> None:
    st.session_state[state.CORPUS_SOURCE] = "plays"


def download_gutenberg() -> None:
    url = gutenberg_url()
    bar = st.progress(0.0, text=f"Downloading {url} ...")

    def progress(done: int, total: int | None) -> None:
        if total:
            bar.progress(min(1.0, done / total), text=f"Downloading: {done / 1e6:.1f} of {total / 1e6:.1f} MB")
        else:
            bar.progress(0.0, text=f"Downloading: {done / 1e6:.1f} MB")

    try:
        gutenberg(url, progress=progress)  # cached on this server's disk for every visitor
        bar.empty()
    except CorpusError as error:
        bar.empty()
        st.error(f"The download failed: {error}")
        st.button("Use the bundled plays instead", on_click=use_plays)


def upload_section() -> None:
    st.caption(f"A plain-text (.txt) file of up to {UPLOAD_LIMIT_MB} MB, in UTF-8, UTF-16 or Latin-1.")
    uploaded = st.file_uploader("Upload a text file", type=["txt"], key=state.UPLOAD_WIDGET)
    if uploaded is None:
        return
    data = uploaded.getvalue()
    digest = services.digest(data)
    current = state.upload_choice()
    if current is not None and current.digest == digest:
        return
    try:
        text_from_bytes(data, name=uploaded.name, max_bytes=UPLOAD_LIMIT_MB * 1_000_000)  # only to check it
    except CorpusError as error:
        kept = f" Still using {current.name}." if current else ""
        st.error(f"{error}.{kept}")
        return
    # Kept in the visitor's workspace, so a reload or a server restart still has it.
    path = state.workspace().uploads / f"{digest}.txt"
    if not path.is_file():
        atomic_write(path, lambda file: file.write(data))
    state.set_upload(state.Upload(uploaded.name, digest, path))


def source_section() -> None:
    source = st.radio(
        "Text to learn from",
        options=list(SOURCES),
        format_func=SOURCES.get,
        key=state.CORPUS_SOURCE,
        horizontal=True,
        persist_state="session",
    )
    if source == "plays":
        titles = services.play_names()
        st.multiselect(
            "Plays (none chosen = all 38)",
            options=list(titles),
            format_func=lambda name: titles[name],
            key=state.CORPUS_PLAYS,
            placeholder="All plays",
            help="Train on one or two plays for a quick start, or on all of them for the best model.",
            persist_state="session",
        )
    elif source == "gutenberg":
        if not gutenberg_cache_path(gutenberg_url()).is_file():
            st.write("The recipe's source: ebook #100, about 5.5 MB, downloaded once and cached on this server.")
            if st.button("Download the Complete Works", type="primary"):
                download_gutenberg()
    else:
        upload_section()


def statistics_section() -> None:
    text, missing = chosen_text()
    if text is None:
        st.info(missing)
        return
    stats = text.encoded
    min_word_freq = state.config_widget(
        st.slider,
        "min_word_freq: keep words seen more than this many times",
        "min_word_freq",
        min_value=0,
        max_value=50,
        scope="data",
        help="Rarer words become <unk> (the unknown word, index 0). The recipe used 5.",
    )
    vocabulary = stats.vocabulary_size(min_word_freq)
    columns = st.columns(4)
    columns[0].metric("Words in the text", f"{stats.tokens:,}")
    columns[1].metric("Distinct words", f"{len(stats.words):,}")
    columns[2].metric("Vocabulary size", f"{vocabulary:,}", help="Kept words plus <unk>")
    columns[3].metric("Words that become <unk>", f"{stats.unknown_share(min_word_freq):.1%}")
    st.caption(text.description)

    # Imported here, after the metrics are on their way: Altair and pandas take a few tenths of a
    # second to import on a fresh server, and the numbers need neither.
    from app import charts

    left, right = st.columns(2)
    with left:
        st.altair_chart(charts.top_words_chart(stats.words[:25], stats.counts[:25].tolist()), width="stretch")
    with right:
        st.altair_chart(charts.zipf_chart(stats.counts, min_word_freq), width="stretch")

    st.subheader("What cleaning does")
    raw_lines = [line for line in text.sample.splitlines() if line.strip()][:14]
    raw = "\n".join(raw_lines)
    left, right = st.columns(2)
    left.caption("Raw text")
    left.code(raw, language=None, wrap_lines=True)
    right.caption("Cleaned words (lowercase, punctuation gone, one space between words)")
    right.code(" ".join(tokenize(raw)), language=None, wrap_lines=True)


st.title("📜 Data")
st.write(
    "Choose the text the model learns from. Cleaning lowercases it, turns punctuation (except hyphens "
    "and apostrophes) into spaces, and splits it into words."
)
source_section()
statistics_section()
