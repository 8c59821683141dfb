"""What the word rules read: the n-gram index and a text's history with its seen-word mask."""

from __future__ import annotations

import torch

from lstm_core.sampling.history import History, NgramIndex, banned_ngram_words


def test_ngram_index_bans_completions_of_seen_ngrams():
    ids = [1, 2, 3, 1, 2]
    assert banned_ngram_words(ids, 3) == {3}  # "1 2" was followed by 3
    assert banned_ngram_words(ids, 2) == {3}  # "2" was followed by 3
    assert banned_ngram_words(ids, 1) == {1, 2, 3}
    assert banned_ngram_words(ids, 4) == set()
    assert banned_ngram_words(ids, 0) == set()
    index = NgramIndex(2, ids)
    twin = index.copy()
    twin.append(3)
    assert index.banned() == {3} and twin.banned() == {1}


def test_history_views_are_built_on_first_use_and_kept_up_to_date():
    history = History([1, 2])
    seen = history.seen(5)
    assert seen.tolist() == [False, True, True, False, False]
    assert history.ngrams(2).banned() == set()
    history.append(4).append(1)
    assert history.ids == [1, 2, 4, 1]
    assert history.seen(5).tolist() == [False, True, True, False, True]
    assert history.ngrams(2).banned() == {2}  # "1" was followed by 2
    assert history.ngrams(3).banned() == set()  # built now, from every id so far
    assert NgramIndex(2, history.ids).banned() == history.ngrams(2).banned()


def test_a_copied_history_is_independent():
    history = History([1, 2, 1])
    history.seen(4)
    history.ngrams(2)
    twin = history.copy()
    twin.append(3)
    assert history.ids == [1, 2, 1] and twin.ids == [1, 2, 1, 3]
    assert not bool(history.seen(4)[3]) and bool(twin.seen(4)[3])
    assert history.ngrams(2).banned() == {2} and twin.ngrams(2).banned() == set()
    assert torch.equal(History().seen(3), torch.zeros(3, dtype=torch.bool))
