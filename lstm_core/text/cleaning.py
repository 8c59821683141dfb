"""Text -> words: the recipe's cleaning rule with its faults fixed, and the train/valid/test split.

The cookbook recipe lowercased the text, turned every punctuation mark except the hyphen and
the apostrophe into a space, and then collapsed whitespace -- but it wrote ``re.sub('s+', ...)``
(which deletes every letter s) and removed line breaks without leaving a space (which glued the
last word of a line to the first word of the next: "theywould"). Here whitespace of any kind,
line breaks included, becomes a single space.

Two details the recipe left open, decided here:

* Hyphens join the parts of a word (``a-hold``, ``main-course``). A run of two or more hyphens is
  a dash between words (``word--word``), so it separates them; a hyphen at either end of a word
  is dropped.
* Apostrophes inside a word are kept (``o'er``, ``to't``), and so is a single leading or trailing
  one, because Shakespeare's elisions need it (``'tis``, ``th'``). A word wrapped in apostrophes
  on both sides (``'ladies'``) is a quotation, so both are dropped. Words made only of apostrophes
  and hyphens are dropped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from lstm_core.errors import InputError

# Typographic apostrophes and dashes are folded into their ASCII forms first, so that
# "o’er" and "o'er" are the same word and an em dash separates words like "--" does.
_FOLD = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u2014": "--", "\u2013": "--"})
# Anything that is not a letter, a digit, an apostrophe, a hyphen or whitespace is punctuation.
_PUNCTUATION = re.compile(r"[^\w\s'-]|_")
_DASH = re.compile(r"-{2,}")
_WHITESPACE = re.compile(r"\s+")


def _clean_word(word: str) -> str:
    # Peel edge hyphens and wrapping quotes until none is left, so that "''ladies''" and
    # "'-ladies-'" end as "ladies" and cleaning cleaned text changes nothing.
    while True:
        peeled = word.strip("-")
        if len(peeled) >= 2 and peeled[0] == "'" and peeled[-1] == "'":
            peeled = peeled[1:-1]
        if peeled == word:
            break
        word = peeled
    # After the quote rule a word may still be nothing but marks ("'", "-'-").
    if not word.strip("'-"):
        return ""
    return word


def tokenize(text: str) -> list[str]:
    """Split raw text into cleaned, lowercase words.

    >>> tokenize("Shall I compare thee\\nto a summer's day? 'Tis--so.")
    ['shall', 'i', 'compare', 'thee', 'to', 'a', "summer's", 'day', "'tis", 'so']
    """
    text = text.translate(_FOLD).lower()
    text = _PUNCTUATION.sub(" ", text)
    text = _DASH.sub(" ", text)
    words = (_clean_word(word) for word in _WHITESPACE.split(text))
    return [word for word in words if word]


def clean_text(text: str) -> str:
    """The cleaned text as one string of words separated by single spaces."""
    return " ".join(tokenize(text))


@dataclass(frozen=True)
class Split:
    """Contiguous train / validation / test blocks of one token stream."""

    train: list[str]
    valid: list[str]
    test: list[str]


def split_sizes(n: int, fractions: tuple[float, float, float] = (0.9, 0.05, 0.05)) -> tuple[int, int, int]:
    """How many of ``n`` tokens go to the train, validation and test blocks (see :func:`split_tokens`)."""
    # The same rounding tolerance for the signs as for the sum: 1 - 0.8 - 0.2 is -5.6e-17.
    if len(fractions) != 3 or any(f < -1e-6 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise InputError(f"split fractions must be three non-negative numbers that sum to 1, got {fractions}")
    if fractions[0] <= 0:
        raise InputError("the training fraction of the split must be greater than 0")
    n_train = min(n, round(n * fractions[0]))
    n_valid = min(n - n_train, max(0, round(n * fractions[1])))  # never negative within the tolerance
    return n_train, n_valid, n - n_train - n_valid


def split_tokens(tokens: Sequence[str], fractions: tuple[float, float, float] = (0.9, 0.05, 0.05)) -> Split:
    """Cut the token stream into three contiguous blocks, in order, never shuffled.

    Contiguity matters: the model is trained on running text, and a validation block cut from
    the middle of a sentence shares at most one sentence boundary with the training block, so the
    held-out perplexity is honest.
    """
    n_train, n_valid, _ = split_sizes(len(tokens), fractions)
    return Split(
        train=list(tokens[:n_train]),
        valid=list(tokens[n_train : n_train + n_valid]),
        test=list(tokens[n_train + n_valid :]),
    )
