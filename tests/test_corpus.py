"""Where text comes from (lstm_core.text.corpus) and atomic writes (lstm_core.files).

The Gutenberg download is tested against a real HTTP server on 127.0.0.1 whose replies each
test scripts, so that retries, timeouts and broken transfers happen for real.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import BinaryIO

import pytest

import lstm_core.text.corpus as corpus_module
from lstm_core.files import atomic_write, atomic_write_chunks, atomic_write_text
from lstm_core.text.corpus import (
    Corpus,
    CorpusError,
    bundled_plays,
    decode_bytes,
    download,
    gutenberg,
    list_plays,
    load_corpus,
    markdown_play_to_text,
    play_title,
    strip_gutenberg_boilerplate,
    text_from_bytes,
    text_from_file,
)

_MARKUP = "_*#[]\\"


# ============================================================================================
# Bundled plays
# ============================================================================================


@pytest.fixture(scope="module")
def tempest() -> str:
    return bundled_plays(["the-tempest"]).text


def _lines(text: str) -> list[str]:
    return text.splitlines()


def test_list_plays() -> None:
    plays = list_plays()
    assert {"the-tempest", "hamlet", "henry-vi-part-1", "edward-iii"} <= set(plays)
    assert list(plays) == sorted(plays)
    assert all(path.suffix == ".md" and path.is_file() for path in plays.values())
    assert play_title("the-tempest") == "The Tempest"


def test_tempest_keeps_speech_and_drops_markup(tempest: str) -> None:
    for mark in _MARKUP:
        assert mark not in tempest
    lines = _lines(tempest)
    assert "Here, master: what cheer?" in lines
    assert "Boatswain!" in lines  # spoken, unlike the speaker line **Boatswain**
    assert "Boatswain" not in lines
    assert "Master" not in lines
    assert "Enter a Master and a Boatswain" not in tempest
    assert "A tempestuous noise" not in tempest
    assert "Exeunt" not in lines and "Exit" not in lines
    assert "or we run ourselves aground: bestir, bestir." in lines  # trailing spaces stripped
    assert all(line == line.strip() and line for line in lines)


def test_malformed_burthen_direction_does_not_swallow_the_song(tempest: str) -> None:
    # _Burthen _\[dispersedly, within_ has an unclosed bracket and an odd underscore.
    lines = _lines(tempest)
    assert "Burthen" not in tempest and "dispersedly" not in tempest
    assert "The watch-dogs bark!" in lines
    assert "Hark, hark! I hear" in lines
    assert "Cry, Cock-a-diddle-dow." in lines
    assert "Where should this music be? i' the air or the earth?" in lines
    assert "Hark! now I hear them,--Ding-dong, bell." in lines


def test_tempest_ends_with_the_epilogue(tempest: str) -> None:
    assert tempest.endswith("As you from crimes would pardon'd be,\nLet your indulgence set me free.\n")
    assert "Now my charms are all o'erthrown," in _lines(tempest)
    assert "EPILOGUE" not in tempest and "SPOKEN BY PROSPERO" not in tempest


def test_capitals_speaker_line_in_henry_vi_part_1() -> None:
    # "BISHOP" closes the previous speech's paragraph and "**OF WINCHESTER**" opens the next.
    text = bundled_plays(["henry-vi-part-1"]).text
    lines = _lines(text)
    assert "BISHOP" not in text and "WINCHESTER" not in text
    assert "Whom, like a school-boy, you may over-awe." in lines
    assert "He was a king bless'd of the King of kings." in lines


def test_asterisk_directions_in_edward_iii() -> None:
    text = bundled_plays(["edward-iii"]).text
    lines = _lines(text)
    assert "*" not in text
    assert "Enter King Edward" not in text
    assert "Artois." not in lines  # the second line of the two-line opening direction
    assert "He draws his sword" not in text and "Drawing his" not in text
    assert lines[0] == "Robert of Artois, banished though thou be"
    assert "Bearest thou a part in this conspiracy?" in lines
    assert "Lorraine, behold the sharpness of this steel:" in lines
    assert "Fervent desire that sits against my heart," in lines


def test_whole_corpus_has_no_markup_left() -> None:
    corpus = bundled_plays()
    for mark in _MARKUP:
        assert mark not in corpus.text, mark
    assert corpus.name == f"Shakespeare's plays (all {len(list_plays())})"
    assert "To be, or not to be: that is the question:" in _lines(corpus.text)


def test_subset_in_the_given_order() -> None:
    corpus = bundled_plays(["macbeth", "the-tempest"])
    macbeth = bundled_plays(["macbeth"]).text
    assert corpus.text == macbeth + "\n" + bundled_plays(["the-tempest"]).text
    assert corpus.name == "Macbeth, The Tempest"
    assert "2 play(s)" in corpus.description
    assert isinstance(corpus, Corpus)
    assert corpus.size_bytes == len(corpus.text.encode("utf-8"))
    assert "Here, master: what cheer?" in corpus.text
    assert "To be, or not to be" not in corpus.text


def test_many_plays_are_counted_in_the_name() -> None:
    names = ["macbeth", "hamlet", "othello", "king-lear"]
    assert bundled_plays(names).name == f"Shakespeare's plays (4 of {len(list_plays())})"


def test_unknown_play_lists_the_available_ones() -> None:
    with pytest.raises(CorpusError, match="unknown play") as info:
        bundled_plays(["the-tempest", "cardenio"])
    message = str(info.value)
    assert "cardenio" in message
    assert "Available:" in message and "the-tempest" in message and "hamlet" in message
    assert isinstance(info.value, ValueError)


def test_no_plays_chosen() -> None:
    with pytest.raises(CorpusError, match="at least one play"):
        bundled_plays([])


# ---- markdown_play_to_text on hand-written snippets: one per case in corpus.py's list ------


def test_headings_are_dropped() -> None:
    markdown = "# The Tempest\n\n## ACT I\n\n### SCENE I. On a ship at sea.\n\n**Master**  \nBoatswain!\n"
    assert markdown_play_to_text(markdown) == "Boatswain!\n"


def test_speaker_lines_are_dropped() -> None:
    markdown = "**Master**  \nBoatswain!\n\n**Boatswain**  \nHere, master: what cheer?\n"
    assert markdown_play_to_text(markdown) == "Boatswain!\nHere, master: what cheer?\n"


def test_underscore_direction_paragraphs_are_dropped_even_over_several_lines() -> None:
    markdown = (
        "_Enter a Master and a Boatswain_\n\n**Master**  \nBoatswain!\n\n"
        "_Enter ALONSO, SEBASTIAN,\nand others_\n\n**ALONSO**  \nPlay the men.\n"
    )
    assert markdown_play_to_text(markdown) == "Boatswain!\nPlay the men.\n"


def test_asterisk_direction_paragraphs_are_dropped() -> None:
    markdown = "*Enter King Edward, Derby, and \nArtois.*\n\n**KING EDWARD**  \nRobert of Artois\n\n*Sound a horn.*\n"
    assert markdown_play_to_text(markdown) == "Robert of Artois\n"


@pytest.mark.parametrize(
    ("speech", "spoken"),
    [
        ("__\\[Awaking]_  \nAnd run through fire", "And run through fire"),
        ("_\\[Aside]_  \nI'll take my leave.", "I'll take my leave."),
        ("[Within]_  \nWho's there?", "Who's there?"),
        ("Bearest thou a part?  \n*[He draws his sword.]*", "Bearest thou a part?"),
        ("And either _\\[ ]_  \nthe devil", "And either\nthe devil"),
        ("Go, sirrah [Exit Servant]  \nand fetch", "Go, sirrah\nand fetch"),
        ("Go, sirrah \\[Exit Servant]  \nand fetch", "Go, sirrah\nand fetch"),
    ],
)
def test_inline_directions_are_removed(speech: str, spoken: str) -> None:
    assert markdown_play_to_text(f"**LYSANDER**  \n{speech}\n") == spoken + "\n"


def test_escaped_dash_and_markdown_line_breaks() -> None:
    markdown = "**LEAR**  \nshould enjoy half his revenue,'\\--My son Edgar!  \n\\--Is't possible?  \n"
    assert markdown_play_to_text(markdown) == "should enjoy half his revenue,'--My son Edgar!\n--Is't possible?\n"


def test_capitals_only_lines_are_dropped_but_speech_with_capitals_is_kept() -> None:
    markdown = (
        "**GLOUCESTER**  \nWhom, like a school-boy, you may over-awe.  \nBISHOP\n\n"
        "**OF WINCHESTER**  \nO, I am slain!  \nI, I! O, O, O!  \nGod save King HENRY!\n\n"
        "EPILOGUE  \nSPOKEN BY PROSPERO  \nNow my charms are all o'erthrown,\n"
    )
    assert markdown_play_to_text(markdown) == (
        "Whom, like a school-boy, you may over-awe.\nO, I am slain!\nI, I! O, O, O!\nGod save King HENRY!\n"
        "Now my charms are all o'erthrown,\n"
    )


def test_a_malformed_direction_spoils_only_its_own_paragraph() -> None:
    markdown = (
        "_Burthen _\\[dispersedly, within_\n\nThe watch-dogs bark!\n\n_Burthen Bow-wow_\n\n"
        "Hark, hark! I hear  \nThe strain of strutting chanticleer\n\n**FERDINAND**  \nWhere should this music be?\n"
    )
    assert markdown_play_to_text(markdown) == (
        "The watch-dogs bark!\nHark, hark! I hear\nThe strain of strutting chanticleer\nWhere should this music be?\n"
    )


def test_paragraph_breaks_with_spaces_and_stray_marks() -> None:
    markdown = "**A**  \nOne line_  \n  \n_Exit_\n \t\n**B**  \nAnother *line*\n"
    assert markdown_play_to_text(markdown) == "One line\nAnother\n"


# ============================================================================================
# Project Gutenberg, from a real local server
# ============================================================================================


@dataclass
class Reply:
    """One scripted answer of the test server."""

    status: int = 200
    body: bytes = b""
    announced_length: int | None = None  # the Content-Length header; None: the body's length
    stall: bool = False  # say nothing until the test ends (the client should time out)
    headers: dict[str, str] = field(default_factory=dict)


class _Controller:
    def __init__(self) -> None:
        self.replies: list[Reply] = [Reply(404)]
        self.requests: list[str] = []
        self.release = threading.Event()
        self._lock = threading.Lock()

    def next_reply(self, path: str) -> Reply:
        # Replies are used in order; the last one answers every later request too.
        with self._lock:
            self.requests.append(path)
            return self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        reply = self.server.controller.next_reply(self.path)
        if reply.stall:
            self.server.controller.release.wait(timeout=10)
            return
        length = len(reply.body) if reply.announced_length is None else reply.announced_length
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(length))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up first
        # HTTP/1.0: the connection closes here, so a short body is a broken transfer.

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    controller: _Controller


@dataclass
class LocalServer:
    base_url: str
    controller: _Controller

    def url(self, path: str = "/pg100.txt") -> str:
        return self.base_url + path

    def reply(self, *replies: Reply) -> None:
        self.controller.replies = list(replies)

    @property
    def requests(self) -> list[str]:
        return self.controller.requests


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalServer]:
    # requests honours proxy variables; the test server must be reached directly.
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.controller = _Controller()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    host, port = httpd.server_address[:2]
    try:
        yield LocalServer(f"http://{host}:{port}", httpd.controller)
    finally:
        httpd.controller.release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


_BODY = "Here, master: what cheer?\nThe watch-dogs bark!\n" * 3000  # ~140 kB: several chunks


def _gutenberg_file(header_lines: int, body: str = _BODY) -> bytes:
    header = "".join(f"Header line {i}: Project Gutenberg licence text.\n" for i in range(header_lines))
    return (
        "\ufeff"
        + header
        + "*** START OF THE PROJECT GUTENBERG EBOOK THE COMPLETE WORKS OF WILLIAM SHAKESPEARE ***\n\n\n"
        + body
        + "\n\n*** END OF THE PROJECT GUTENBERG EBOOK THE COMPLETE WORKS OF WILLIAM SHAKESPEARE ***\n"
        + "Footer: the licence, at length.\n" * 40
    ).encode("utf-8")


def _files(folder: Path) -> list[str]:
    return sorted(os.listdir(folder)) if folder.exists() else []


_FAST = {"timeout": 2.0, "backoff": 0.001}


@pytest.mark.parametrize("header_lines", [3, 57])
def test_download_strips_header_and_footer_at_the_markers(
    server: LocalServer, tmp_path: Path, header_lines: int
) -> None:
    server.reply(Reply(body=_gutenberg_file(header_lines)))
    corpus = gutenberg(server.url(), tmp_path, **_FAST)
    assert corpus.text == _BODY
    assert "Header line" not in corpus.text and "Footer" not in corpus.text
    assert "Complete Works" in corpus.name
    assert str(tmp_path) in corpus.description


def test_progress_reaches_the_total(server: LocalServer, tmp_path: Path) -> None:
    data = _gutenberg_file(5)
    server.reply(Reply(body=data))
    calls: list[tuple[int, int | None]] = []
    gutenberg(server.url(), tmp_path, progress=lambda done, total: calls.append((done, total)), **_FAST)
    assert calls[0] == (0, len(data))
    assert calls[-1] == (len(data), len(data))
    assert len(calls) > 2  # streamed in chunks, not reported once at the end
    done = [d for d, _ in calls]
    assert done == sorted(done)
    assert all(total == len(data) for _, total in calls)


def test_cache_is_reused_without_a_second_request(server: LocalServer, tmp_path: Path) -> None:
    server.reply(Reply(body=_gutenberg_file(5)))
    first = gutenberg(server.url(), tmp_path, **_FAST)
    assert server.requests == ["/pg100.txt"]
    cached = _files(tmp_path)
    assert len(cached) == 1 and not cached[0].endswith(".part")
    server.reply(Reply(500))
    second = gutenberg(server.url(), tmp_path, **_FAST)
    assert server.requests == ["/pg100.txt"]
    assert second == first
    # Another URL is another cache file, never the first one's text.
    server.reply(Reply(body=_gutenberg_file(5, body="Other text.\n")))
    third = gutenberg(server.url("/other.txt"), tmp_path, **_FAST)
    assert third.text == "Other text.\n"
    assert server.requests == ["/pg100.txt", "/other.txt"]
    assert len(_files(tmp_path)) == 2


def test_load_corpus_gutenberg(server: LocalServer, tmp_path: Path) -> None:
    server.reply(Reply(body=_gutenberg_file(5)))
    assert load_corpus("gutenberg", url=server.url(), cache_dir=tmp_path).text == _BODY


def test_default_cache_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from lstm_core.text.corpus import CACHE_ENV_VAR, default_cache_dir

    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path / "data"))
    assert default_cache_dir() == tmp_path / "data"
    monkeypatch.delenv(CACHE_ENV_VAR)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "lstm-playhouse"


def test_server_error_names_the_url_and_the_cause(server: LocalServer, tmp_path: Path) -> None:
    server.reply(Reply(500))
    url = server.url()
    with pytest.raises(CorpusError) as info:
        gutenberg(url, tmp_path, retries=2, **_FAST)
    message = str(info.value)
    assert url in message
    assert "500" in message and "Server Error" in message
    assert len(server.requests) == 3  # a server error is retried
    assert _files(tmp_path) == []


def test_client_error_is_not_retried(server: LocalServer, tmp_path: Path) -> None:
    server.reply(Reply(404))
    with pytest.raises(CorpusError, match="404"):
        gutenberg(server.url(), tmp_path, retries=3, **_FAST)
    assert len(server.requests) == 1


def test_failed_download_leaves_an_existing_file_byte_identical(server: LocalServer, tmp_path: Path) -> None:
    path = tmp_path / "pg100.txt"
    before = b"\x00old cached bytes \xff, exactly as they were\n" * 10
    path.write_bytes(before)
    server.reply(Reply(500))
    with pytest.raises(CorpusError, match="500"):
        download(server.url(), path, retries=1, **_FAST)
    assert path.read_bytes() == before
    # A transfer that breaks off half-way does not clobber it either.
    server.reply(Reply(body=b"new" * 1000, announced_length=100_000))
    with pytest.raises(CorpusError):
        download(server.url(), path, retries=0, **_FAST)
    assert path.read_bytes() == before
    assert _files(tmp_path) == ["pg100.txt"]


def test_an_unwritable_cache_is_reported_at_once_not_retried(server: LocalServer, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    server.reply(Reply(body=b"text"), Reply(body=b"text"))
    with pytest.raises(CorpusError, match="cannot create the cache folder"):
        download(server.url(), blocker / "pg100.txt", retries=1, **_FAST)
    assert len(server.requests) == 0  # checked before asking the server


def test_a_failing_disk_write_is_not_retried(
    server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(path: Path, chunks: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(corpus_module, "atomic_write_chunks", disk_full)
    server.reply(Reply(body=b"text"), Reply(body=b"text"))
    with pytest.raises(CorpusError, match=r"could not save the download .* No space left on device"):
        download(server.url(), tmp_path / "pg100.txt", retries=1, **_FAST)
    assert len(server.requests) == 1


def test_timeout_gives_a_clear_error(server: LocalServer, tmp_path: Path) -> None:
    server.reply(Reply(stall=True))
    url = server.url()
    with pytest.raises(CorpusError) as info:
        gutenberg(url, tmp_path, timeout=0.2, retries=0, backoff=0.001)
    message = str(info.value)
    assert url in message
    assert "timed out" in message.lower()
    assert _files(tmp_path) == []


def test_interrupted_transfer_leaves_no_partial_file(server: LocalServer, tmp_path: Path) -> None:
    data = _gutenberg_file(5)
    server.reply(Reply(body=data[:70_000], announced_length=len(data)))
    cache = tmp_path / "cache"
    with pytest.raises(CorpusError) as info:
        gutenberg(server.url(), cache, retries=1, **_FAST)
    assert server.url() in str(info.value)
    assert len(server.requests) == 2  # a broken transfer is retried
    assert _files(cache) == []  # neither the final name nor a leftover .part file


@pytest.mark.parametrize(
    "failure",
    [Reply(500), Reply(503), Reply(body=b"partial", announced_length=50_000)],
    ids=["500", "503", "broken"],
)
def test_a_failure_is_retried_then_succeeds(server: LocalServer, tmp_path: Path, failure: Reply) -> None:
    server.reply(failure, Reply(body=_gutenberg_file(5)))
    corpus = gutenberg(server.url(), tmp_path, retries=2, **_FAST)
    assert corpus.text == _BODY
    assert len(server.requests) == 2
    assert len(_files(tmp_path)) == 1


def test_too_many_requests_is_retried_after_what_the_server_asks(
    server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    waits: list[float] = []
    monkeypatch.setattr("urllib3.util.retry.time.sleep", waits.append)  # record the waits, do not wait
    busy = Reply(429, headers={"Retry-After": "7"})
    server.reply(busy, Reply(503, headers={"Retry-After": "86400"}), Reply(body=_gutenberg_file(5)))
    corpus = gutenberg(server.url(), tmp_path, retries=3, **_FAST)
    assert corpus.text == _BODY
    assert len(server.requests) == 3
    assert waits == [7, corpus_module.MAX_RETRY_AFTER_S]  # a day is cut to the cap


def test_repeated_server_errors_back_off_exponentially(
    server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    waits: list[float] = []
    monkeypatch.setattr("urllib3.util.retry.time.sleep", waits.append)
    server.reply(Reply(502), Reply(502), Reply(502), Reply(body=_gutenberg_file(5)))
    gutenberg(server.url(), tmp_path, retries=3, timeout=2.0, backoff=0.5)
    assert len(server.requests) == 4
    assert [w for w in waits if w] == [1.0, 2.0]  # urllib3 retries the first failure at once


def test_no_retries_means_one_attempt(server: LocalServer, tmp_path: Path) -> None:
    server.reply(Reply(500), Reply(body=_gutenberg_file(5)))
    with pytest.raises(CorpusError):
        gutenberg(server.url(), tmp_path, retries=0, **_FAST)
    assert len(server.requests) == 1


def test_unreachable_server_gives_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    # A port that was just free: nothing listens there now.
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/pg100.txt"
    with pytest.raises(CorpusError, match="could not download") as info:
        gutenberg(url, tmp_path, retries=0, timeout=2.0)
    assert url in str(info.value)


# ---- the markers ---------------------------------------------------------------------------


def test_boilerplate_markers_variants() -> None:
    text = (
        "head\n*** START OF THIS PROJECT GUTENBERG EBOOK X ***\nbody\n***END OF THE PROJECT GUTENBERG EBOOK X ***\ntail"
    )
    assert strip_gutenberg_boilerplate(text) == "body\n"
    lower = "head\n*** start of the project gutenberg ebook x ***\nbody\n"
    assert strip_gutenberg_boilerplate(lower) == "body\n"  # truncated file: only the header goes


def test_text_without_markers_is_kept_whole() -> None:
    assert strip_gutenberg_boilerplate("\n  just a text\nwith *** START OF nothing\n") == (
        "just a text\nwith *** START OF nothing\n"
    )


def test_markers_must_start_a_line() -> None:
    text = "a quote: *** START OF THE PROJECT GUTENBERG EBOOK *** inside a line\nbody\n"
    assert strip_gutenberg_boilerplate(text) == text


# ============================================================================================
# Any text: bytes and files
# ============================================================================================


def test_utf8_with_byte_order_mark() -> None:
    assert decode_bytes("\ufeffO\u2019er the sea".encode()) == "O\u2019er the sea"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be"])
def test_utf16_with_byte_order_mark(encoding: str) -> None:
    data = ("\ufeff" if encoding == "utf-16-be" else "") + "O\u2019er the sea, my lord"
    assert decode_bytes(data.encode(encoding)) == "O\u2019er the sea, my lord"


def test_windows_1252_fallback() -> None:
    # 0x92 is the curly apostrophe in Windows-1252 and invalid as UTF-8.
    assert decode_bytes(b"o\x92er caf\xe9") == "o\u2019er caf\u00e9"


def test_latin_1_fallback_for_bytes_windows_1252_leaves_undefined() -> None:
    # 0x81 and 0x8d are undefined in Windows-1252; Latin-1 decodes every byte.
    assert decode_bytes(b"caf\xe9 \x81\x8d") == "caf\u00e9 \x81\x8d"


def test_binary_with_nul_bytes_is_refused() -> None:
    with pytest.raises(CorpusError, match=r"picture\.png looks like a binary file \(it contains NUL bytes\)"):
        decode_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "picture.png")


def test_mostly_control_characters_are_refused() -> None:
    with pytest.raises(CorpusError, match="control characters"):
        text_from_bytes(bytes(range(1, 32)) * 10 + b"some words")


def test_a_few_control_characters_are_accepted() -> None:
    assert text_from_bytes(b"a form feed\x0c and a bell\x07 in " + b"plenty of words " * 10).text.startswith("a form")


@pytest.mark.parametrize("data", [b"", b"   \n\t\r\n  ", "\ufeff".encode()])
def test_empty_text_is_refused(data: bytes) -> None:
    with pytest.raises(CorpusError, match=r"notes\.txt is empty"):
        text_from_bytes(data, name="notes.txt")


def test_punctuation_only_is_refused() -> None:
    with pytest.raises(CorpusError, match="no words in it"):
        text_from_bytes(b"... !!! -- ?? ___ ***")


def test_too_large_is_refused_before_decoding() -> None:
    with pytest.raises(CorpusError, match="the limit is"):
        text_from_bytes(b"\x00" * 101, name="big.txt", max_bytes=100)
    assert text_from_bytes(b"a" * 100, max_bytes=100).text == "a" * 100


def test_text_from_bytes_makes_a_corpus() -> None:
    corpus = text_from_bytes("Shall I compare thee\nto a summer\u2019s day?\n".encode(), name="sonnet.txt")
    assert corpus.name == "sonnet.txt"
    assert corpus.text == "Shall I compare thee\nto a summer\u2019s day?\n"
    assert corpus.description.startswith("sonnet.txt: ") and "2 lines" in corpus.description


def test_text_from_file(tmp_path: Path) -> None:
    path = tmp_path / "sonnet.txt"
    path.write_bytes(b"Shall I compare thee to a summer\x92s day?\n")
    corpus = text_from_file(path)
    assert corpus.text == "Shall I compare thee to a summer\u2019s day?\n"
    assert corpus.name == str(path)
    assert load_corpus("file", path=path) == corpus


def test_text_from_file_missing(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.txt"
    with pytest.raises(CorpusError, match="no such file") as info:
        text_from_file(path)
    assert str(path) in str(info.value)
    with pytest.raises(CorpusError, match="no such file"):
        text_from_file(tmp_path)  # a folder is not a text file


def test_text_from_file_too_large(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    path.write_bytes(b"words " * 100)
    with pytest.raises(CorpusError, match="the limit is"):
        text_from_file(path, max_bytes=599)


def test_load_corpus_sources(tmp_path: Path) -> None:
    assert load_corpus("plays", plays=["the-tempest"]).name == "The Tempest"
    with pytest.raises(CorpusError, match="needs a path"):
        load_corpus("file")
    with pytest.raises(CorpusError, match="unknown corpus source 'web'"):
        load_corpus("web")


# ============================================================================================
# Atomic writes (lstm_core.files), which keep the download cache whole
# ============================================================================================


def test_atomic_write_replaces_the_file(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "folder" / "file.txt"
    atomic_write_text(path, "first")
    atomic_write_text(path, "second, \u00fcnicode")
    assert path.read_text(encoding="utf-8") == "second, \u00fcnicode"
    atomic_write_chunks(path, iter([b"a", b"b", b"c"]))
    assert path.read_bytes() == b"abc"
    assert _files(path.parent) == ["file.txt"]


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_atomic_write_keeps_the_old_file_when_the_writer_raises(tmp_path: Path, error: BaseException) -> None:
    path = tmp_path / "file.txt"
    path.write_bytes(b"old contents")

    def write(file: BinaryIO) -> None:
        file.write(b"half of the new")
        raise error

    with pytest.raises(type(error)):
        atomic_write(path, write)
    assert path.read_bytes() == b"old contents"
    assert _files(tmp_path) == ["file.txt"]  # no .part file left behind


def test_atomic_write_leaves_nothing_when_there_was_no_file(tmp_path: Path) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"start"
        raise CorpusError("connection closed")

    with pytest.raises(CorpusError):
        atomic_write_chunks(tmp_path / "new.txt", chunks())
    assert _files(tmp_path) == []
