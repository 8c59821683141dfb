"""Atomic file writes: a reader never sees a half-written file under the final name."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO


def atomic_write(path: Path | str, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it over ``path``.

    If ``write`` raises (or the process dies), the temporary file is removed (or left under a
    ``.part`` name) and whatever was at ``path`` before is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def atomic_write_chunks(path: Path | str, chunks: Iterable[bytes]) -> None:
    """Write an iterable of byte chunks atomically (a download, streamed)."""

    def write(file: BinaryIO) -> None:
        for chunk in chunks:
            file.write(chunk)

    atomic_write(path, write)


def atomic_write_text(path: Path | str, text: str) -> None:
    atomic_write(path, lambda file: file.write(text.encode("utf-8")))
