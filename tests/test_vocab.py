"""The vocabulary (lstm_core.text.vocab): the "more than" rule, <unk>, ordering, coverage, JSON form."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lstm_core.text.vocab import UNK_INDEX, UNK_TOKEN, Coverage, Vocab


def _repeat(**counts: int) -> list[str]:
    return [word for word, n in counts.items() for _ in range(n)]


def test_unknown_token_is_index_zero() -> None:
    vocab = Vocab.build(["a", "b", "a"], min_word_freq=0)
    assert UNK_TOKEN == "<unk>"
    assert UNK_INDEX == 0
    assert vocab.itos[0] == UNK_TOKEN
    assert vocab.stoi[UNK_TOKEN] == 0
    assert vocab.index("never-seen") == 0


def test_min_word_freq_keeps_words_seen_more_than_it() -> None:
    vocab = Vocab.build(_repeat(twice=2, thrice=3, once=1), min_word_freq=2)
    assert "thrice" in vocab
    assert "twice" not in vocab  # seen exactly min_word_freq times: unknown
    assert "once" not in vocab
    assert vocab.itos == [UNK_TOKEN, "thrice"]
    # <unk>'s count is the number of training tokens it replaced.
    assert vocab.counts == [3, 3]
    assert vocab.encode(["twice", "thrice", "once"]) == [0, 1, 0]


def test_min_word_freq_zero_keeps_every_word() -> None:
    tokens = ["a", "b", "c", "a"]
    vocab = Vocab.build(tokens, min_word_freq=0)
    assert set(vocab.itos[1:]) == {"a", "b", "c"}
    assert vocab.counts[0] == 0
    assert vocab.coverage(tokens).unknown == 0


def test_negative_min_word_freq_is_refused() -> None:
    with pytest.raises(ValueError, match="min_word_freq"):
        Vocab.build(["a"], min_word_freq=-1)


def test_words_ordered_by_frequency_then_alphabetically() -> None:
    vocab = Vocab.build(_repeat(pear=2, apple=2, fig=5, date=1, cherry=2), min_word_freq=0)
    assert vocab.itos == [UNK_TOKEN, "fig", "apple", "cherry", "pear", "date"]
    assert vocab.counts == [0, 5, 2, 2, 2, 1]


def test_same_words_in_any_order_give_the_same_ids() -> None:
    tokens = _repeat(b=2, a=2, c=1)
    assert Vocab.build(tokens, 0) == Vocab.build(list(reversed(tokens)), 0)


def test_the_word_unknown_is_an_ordinary_word() -> None:
    vocab = Vocab.build(["unknown", "unknown", "land"], min_word_freq=1)
    assert vocab.itos == [UNK_TOKEN, "unknown"]
    assert vocab.encode(["unknown", "land"]) == [1, 0]
    assert vocab.decode([1, 0]) == ["unknown", UNK_TOKEN]


def test_unk_token_in_the_input_is_not_a_second_word() -> None:
    vocab = Vocab.build(["<unk>", "<unk>", "a"], min_word_freq=0)
    assert vocab.itos == [UNK_TOKEN, "a"]


def test_encode_and_decode() -> None:
    vocab = Vocab.build(["to", "be", "or", "not", "to", "be"], min_word_freq=0)
    ids = vocab.encode(["to", "be", "or", "not", "to", "die"])
    assert ids == [vocab.stoi["to"], vocab.stoi["be"], vocab.stoi["or"], vocab.stoi["not"], vocab.stoi["to"], 0]
    assert vocab.decode(ids) == ["to", "be", "or", "not", "to", UNK_TOKEN]
    assert len(vocab) == 5
    assert "be" in vocab and "die" not in vocab


def test_unknown_words_in_order_each_once() -> None:
    vocab = Vocab.build(["a", "b"], min_word_freq=0)
    assert vocab.unknown_words(["z", "a", "y", "z", "b", "y", "x"]) == ["z", "y", "x"]
    assert vocab.unknown_words(["a", "b"]) == []


def test_coverage() -> None:
    vocab = Vocab.build(["a", "b"], min_word_freq=0)
    coverage = vocab.coverage(["a", "z", "b", "z"])
    assert coverage == Coverage(tokens=4, unknown=2)
    assert coverage.known == 2
    assert coverage.unknown_share == 0.5
    assert vocab.coverage(iter(["a"])).unknown_share == 0.0
    assert vocab.coverage([]) == Coverage(tokens=0, unknown=0)
    assert Coverage(tokens=0, unknown=0).unknown_share == 0.0


@pytest.mark.parametrize(
    ("words", "counts", "message"),
    [
        ([], None, "first word"),
        (["a", UNK_TOKEN], None, "first word"),
        ([UNK_TOKEN, "a", "a"], None, "twice"),
        ([UNK_TOKEN, "a"], [1], "counts"),
    ],
)
def test_constructor_validates(words: list[str], counts: list[int] | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Vocab(words, counts)


# ---- JSON ----------------------------------------------------------------------------------


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    vocab = Vocab.build(_repeat(o=4, er=3, thee=3, ladies=1, ünïcödé=3), min_word_freq=2)
    path = tmp_path / "sub" / "vocab.json"
    vocab.save(path)
    loaded = Vocab.load(path)
    assert loaded == vocab
    assert loaded.itos == vocab.itos
    assert loaded.counts == vocab.counts
    assert loaded.min_word_freq == 2
    assert loaded.stoi == vocab.stoi
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["words"][0] == UNK_TOKEN
    assert os.listdir(path.parent) == ["vocab.json"]  # no temporary file left behind


def test_dict_round_trip() -> None:
    vocab = Vocab.build(["a", "b", "b"], min_word_freq=0)
    assert Vocab.from_dict(json.loads(json.dumps(vocab.to_dict()))) == vocab


def test_vocabs_with_other_counts_differ() -> None:
    assert Vocab([UNK_TOKEN, "a"], [0, 1]) != Vocab([UNK_TOKEN, "a"], [0, 2])
    assert Vocab([UNK_TOKEN, "a"]) != [UNK_TOKEN, "a"]


_GOOD = {"format": "lstm-playhouse-vocab", "version": 1, "min_word_freq": 0, "words": [UNK_TOKEN], "counts": [0]}


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "[1, 2, 3]",
        json.dumps({"hello": "world"}),
        json.dumps({**_GOOD, "version": 2}),
        json.dumps({**_GOOD, "words": "abc"}),
        json.dumps({**_GOOD, "counts": ["1"]}),
        json.dumps({**_GOOD, "words": ["a"], "counts": [0]}),
        json.dumps({**_GOOD, "min_word_freq": [1]}),
        json.dumps({**_GOOD, "min_word_freq": None}),
        json.dumps({**_GOOD, "min_word_freq": -1}),
    ],
)
def test_corrupt_or_foreign_file_gives_value_error_naming_it(tmp_path: Path, content: str) -> None:
    path = tmp_path / "vocab.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=r"vocab\.json") as info:
        Vocab.load(path)
    assert str(path) in str(info.value)


def test_binary_file_gives_value_error(tmp_path: Path) -> None:
    path = tmp_path / "vocab.json"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match=r"vocab\.json"):
        Vocab.load(path)


def test_missing_file_gives_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no vocabulary file"):
        Vocab.load(tmp_path / "absent.json")


# ---- property ------------------------------------------------------------------------------

_words = st.text(alphabet="abcdefghij'-", min_size=1, max_size=6)


@given(st.lists(_words, min_size=1), st.integers(min_value=0, max_value=3))
def test_encode_decode_round_trip_on_known_words(tokens: list[str], min_word_freq: int) -> None:
    vocab = Vocab.build(tokens, min_word_freq=min_word_freq)
    known = [t for t in tokens if t in vocab]
    assert vocab.decode(vocab.encode(known)) == known
    assert all(i != UNK_INDEX for i in vocab.encode(known))
    # Every other token decodes to <unk>, and the counts add up to the training tokens.
    assert vocab.decode(vocab.encode(tokens)) == [t if t in vocab else UNK_TOKEN for t in tokens]
    assert sum(vocab.counts) == len(tokens)
