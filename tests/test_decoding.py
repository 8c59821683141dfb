"""Decoding: greedy, sampled and beam-search generation, the word rules in them, and the pinned reference.

``tests/data/sampling_reference.json`` holds what generation wrote for a grid of options before
the samplers became a list of processors (``tests/sampling_reference.py`` records it); every
combination must still write the same words.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from lstm_core.errors import InputError
from lstm_core.evaluation.scoring import score
from lstm_core.model.network import State
from lstm_core.sampling.decoding import MAX_LENGTH, beam_score, beam_search, generate
from lstm_core.sampling.options import SamplingOptions
from lstm_core.sampling.step import StepGenerator
from lstm_core.text.vocab import UNK_INDEX, UNK_TOKEN, Vocab
from tests import sampling_reference
from tests.language_models import LAYERS, PRIME, favour_unknown, make_model, repeated_ngrams, sequence_log_prob

REFERENCE = Path(__file__).parent / "data" / "sampling_reference.json"


# ---- the pinned reference --------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference_model():
    return sampling_reference.reference_model()


def reference_cases() -> list[dict]:
    return json.loads(REFERENCE.read_text())["cases"]


def test_the_reference_covers_every_method_rule_and_filter():
    cases = reference_cases()
    assert [case["options"] for case in cases] == sampling_reference.grid()
    assert {case["options"]["method"] for case in cases} == {"greedy", "sample", "beam"}
    assert any(case["stopped"] for case in cases) and not all(case["stopped"] for case in cases)
    assert len({case["words"] for case in cases}) > len(cases) / 3  # the options change the text


@pytest.mark.parametrize("case", reference_cases(), ids=lambda case: "-".join(map(str, case["options"].values())))
def test_every_option_combination_writes_the_same_words_as_before(reference_model, case):
    model, vocab = reference_model
    options = SamplingOptions(**case["options"])
    result = generate(model, vocab, sampling_reference.PRIME, sampling_reference.LENGTH, options)
    assert (result.continuation, result.stopped_at_unknown) == (case["words"], case["stopped"])


# ---- generation ------------------------------------------------------------------------------


def test_empty_prime_is_a_clear_error(sonnet_model, sonnet_vocab):
    for prime in ("!!! ...", "", "  -- '' "):
        with pytest.raises(ValueError, match="no words after cleaning"):
            generate(sonnet_model, sonnet_vocab, prime, 5)
        with pytest.raises(ValueError, match="no words after cleaning"):
            StepGenerator(sonnet_model, sonnet_vocab, prime)


def test_bad_length_and_mismatched_vocabulary_are_refused(sonnet_model, sonnet_vocab, counting_vocab):
    with pytest.raises(ValueError, match="length"):
        generate(sonnet_model, sonnet_vocab, PRIME, -1)
    with pytest.raises(ValueError, match="vocabulary"):
        generate(sonnet_model, counting_vocab, "one", 3)
    assert generate(sonnet_model, sonnet_vocab, PRIME, 0).words == []


def test_length_is_capped_for_a_shared_server(sonnet_model, sonnet_vocab):
    with pytest.raises(InputError, match=f"from 0 to {MAX_LENGTH:,}"):
        generate(sonnet_model, sonnet_vocab, PRIME, MAX_LENGTH + 1)
    with pytest.raises(InputError, match="length"):
        StepGenerator(sonnet_model, sonnet_vocab, PRIME).regenerate(MAX_LENGTH + 1)
    with pytest.raises(InputError, match="length"):
        generate(sonnet_model, sonnet_vocab, PRIME, 2.5)


class BigramModel:
    """Not an ``nn.Module``: a table of next-word log-probs, offering only what generation needs.

    The "hidden feature" of a word is its one-hot row, so ``log_probs`` is a row of the table.
    """

    def __init__(self, table: torch.Tensor) -> None:
        self.table = table.log_softmax(-1)  # (V, V)
        self.vocab_size = table.size(0)
        self.training = False
        self.device = torch.device("cpu")

    def eval(self):
        self.training = False
        return self

    def train(self, mode: bool = True):
        self.training = mode
        return self

    def __call__(self, ids: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        return torch.nn.functional.one_hot(ids, self.vocab_size).float(), (ids[None, :, -1:], ids[None, :, -1:])

    def step(self, ids: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        return torch.nn.functional.one_hot(ids, self.vocab_size).float(), (ids[None, :, None], ids[None, :, None])

    def log_probs(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden @ self.table


def test_any_model_with_the_language_model_protocol_can_generate():
    vocab = Vocab([UNK_TOKEN, "a", "b", "c"])
    table = torch.full((4, 4), -10.0)
    for word, following in ((1, 2), (2, 3), (3, 1), (0, 1)):  # a -> b -> c -> a
        table[word, following] = 0.0
    model = BigramModel(table)
    assert generate(model, vocab, "a", 5).words == ["b", "c", "a", "b", "c"]
    beam = generate(model, vocab, "c", 4, SamplingOptions(method="beam", beam_width=3))
    assert beam.words == ["a", "b", "c", "a"]
    assert score(model, vocab, "a b c a").words[0].rank == 1


def test_generation_reports_the_prime_and_its_unknown_words(sonnet_model, sonnet_vocab):
    result = generate(sonnet_model, sonnet_vocab, "Thou ZOUNDS art, xyzzy zounds!", 4)
    assert result.prime_words == ["thou", "zounds", "art", "xyzzy", "zounds"]
    assert result.unknown_words == ["zounds", "xyzzy"]
    assert len(result.words) == 4 and UNK_TOKEN not in result.words
    assert result.text == "thou zounds art xyzzy zounds " + result.continuation
    assert result.continuation == " ".join(result.words)


def test_temperature_near_zero_samples_exactly_like_greedy(sonnet_model, sonnet_vocab):
    greedy = generate(sonnet_model, sonnet_vocab, PRIME, 15)
    cold = generate(sonnet_model, sonnet_vocab, PRIME, 15, SamplingOptions(method="sample", temperature=1e-5, seed=9))
    assert cold.words == greedy.words


def test_generation_restores_the_models_mode_and_uses_eval_mode(sonnet_vocab):
    model = make_model(len(sonnet_vocab), dropout=0.5)
    model.train()
    first = generate(model, sonnet_vocab, PRIME, 10)
    second = generate(model, sonnet_vocab, PRIME, 10)
    assert model.training  # restored for the trainer
    assert first.words == second.words  # dropout was off while generating
    StepGenerator(model, sonnet_vocab, PRIME).step()
    score(model, sonnet_vocab, PRIME)
    assert model.training
    model.eval()
    generate(model, sonnet_vocab, PRIME, 3)
    assert not model.training


@pytest.mark.parametrize("enabled", [True, False])
def test_generation_leaves_the_onednn_switch_as_it_was(sonnet_model, sonnet_vocab, enabled):
    before = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = enabled
    try:
        generate(sonnet_model, sonnet_vocab, PRIME, 5, SamplingOptions(method="beam", beam_width=2))
        stepper = StepGenerator(sonnet_model, sonnet_vocab, PRIME)
        stepper.step()
        stepper.regenerate(5, SamplingOptions(method="sample", seed=0))
        assert torch.backends.mkldnn.enabled == enabled
    finally:
        torch.backends.mkldnn.enabled = before


def test_generation_from_several_threads_at_once(sonnet_model, sonnet_vocab):
    options = [SamplingOptions(method="sample", seed=seed) for seed in range(8)]
    expected = [generate(sonnet_model, sonnet_vocab, PRIME, 30, o).words for o in options]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda o: generate(sonnet_model, sonnet_vocab, PRIME, 30, o).words, options))
    assert results == expected
    assert torch.backends.mkldnn.enabled


def test_no_repeat_ngram_breaks_a_loop(looping_model, counting_vocab):
    looping = generate(looping_model, counting_vocab, "one two", 20)
    assert repeated_ngrams(looping.prime_words + looping.words, 2)  # the model does loop
    for method in ("greedy", "sample", "beam"):
        options = SamplingOptions(method=method, no_repeat_ngram=2, seed=0)
        result = generate(looping_model, counting_vocab, "one two", 20, options)
        assert len(result.words) == 20
        assert repeated_ngrams(result.prime_words + result.words, 2) == []


def test_a_large_repetition_penalty_avoids_every_seen_word(looping_model, counting_vocab):
    options = SamplingOptions(repetition_penalty=1e9)
    result = generate(looping_model, counting_vocab, "one two", 8, options)
    assert len(set(result.words)) == 8 and not {"one", "two"} & set(result.words)


def test_sampling_with_a_seed_is_reproducible_and_seeds_differ(sonnet_model, sonnet_vocab):
    def run(seed: int) -> list[str]:
        return generate(sonnet_model, sonnet_vocab, PRIME, 20, SamplingOptions(method="sample", seed=seed)).words

    assert run(1) == run(1)
    assert run(1) != run(2)


# ---- the unknown word ------------------------------------------------------------------------


@pytest.mark.parametrize("output_layer", LAYERS)
@pytest.mark.parametrize("method", ["greedy", "sample", "beam"])
def test_unknown_rules_when_unk_is_the_top_choice(output_layer, method, sonnet_vocab, monkeypatch):
    model = make_model(len(sonnet_vocab), output_layer)
    favour_unknown(model, monkeypatch)
    assert int(StepGenerator(model, sonnet_vocab, PRIME).log_probs.argmax()) == UNK_INDEX

    skipped = generate(model, sonnet_vocab, PRIME, 8, SamplingOptions(method=method, unknown="skip", seed=0))
    assert len(skipped.words) == 8 and UNK_TOKEN not in skipped.words and not skipped.stopped_at_unknown

    stopped = generate(model, sonnet_vocab, PRIME, 8, SamplingOptions(method=method, unknown="stop", seed=0))
    assert stopped.words == [] and stopped.stopped_at_unknown

    allowed = generate(model, sonnet_vocab, PRIME, 3, SamplingOptions(method=method, unknown="allow", seed=0))
    assert allowed.words == [UNK_TOKEN] * 3 and not allowed.stopped_at_unknown


# ---- beam search ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [{}, {"unknown": "allow"}, {"repetition_penalty": 3.0}, {"no_repeat_ngram": 2}, {"length_penalty": 0.0}],
)
def test_beam_width_one_is_greedy(sonnet_model, sonnet_vocab, changes):
    greedy = generate(sonnet_model, sonnet_vocab, PRIME, 15, SamplingOptions(**changes))
    beam = generate(sonnet_model, sonnet_vocab, PRIME, 15, SamplingOptions(method="beam", beam_width=1, **changes))
    assert beam == greedy


@pytest.mark.parametrize("method", ["greedy", "beam"])
def test_stop_ends_the_text_where_unk_would_come(sonnet_model, sonnet_vocab, monkeypatch, method):
    favour_unknown(sonnet_model, monkeypatch, bonus=100.0, only_call=5)  # the 5th word would be <unk>
    options = SamplingOptions(method=method, beam_width=1, unknown="stop")
    result = generate(sonnet_model, sonnet_vocab, PRIME, 10, options)
    assert len(result.words) == 4 and result.stopped_at_unknown
    monkeypatch.undo()
    assert result.words == generate(sonnet_model, sonnet_vocab, PRIME, 4).words


@pytest.mark.parametrize("prime", [PRIME, "thou art more", "so long", "and summer's lease"])
def test_wider_beams_find_likelier_continuations_than_greedy(sonnet_model, sonnet_vocab, prime):
    # Not a theorem for beam search in general, but it holds on these cases; the exact check is below.
    greedy = generate(sonnet_model, sonnet_vocab, prime, 8, SamplingOptions(unknown="allow"))
    options = SamplingOptions(method="beam", beam_width=4, length_penalty=0.0, unknown="allow")
    beam = generate(sonnet_model, sonnet_vocab, prime, 8, options)
    greedy_log_prob = sequence_log_prob(sonnet_model, sonnet_vocab, prime, greedy.words)
    assert sequence_log_prob(sonnet_model, sonnet_vocab, prime, beam.words) >= greedy_log_prob - 1e-4


def test_a_beam_wide_enough_is_exhaustive_search():
    vocab = Vocab([UNK_TOKEN, "a", "b", "c"])
    model = make_model(len(vocab), seed=27)  # a seed where greedy misses the best sequence
    with torch.no_grad():
        model.decoder.weight.mul_(40)  # less uniform, so the best sequence stands out
    words = vocab.itos
    everything = [[x, y, z] for x in words for y in words for z in words]
    log_probs = [sequence_log_prob(model, vocab, "a", sequence) for sequence in everything]
    best = everything[max(range(len(everything)), key=log_probs.__getitem__)]
    options = SamplingOptions(method="beam", beam_width=16, length_penalty=0.0, unknown="allow")
    assert generate(model, vocab, "a", 3, options).words == best
    assert generate(model, vocab, "a", 3, SamplingOptions(unknown="allow")).words != best  # greedy misses it


def test_beam_search_is_generate_with_the_beam_method(sonnet_model, sonnet_vocab):
    options = SamplingOptions(method="sample", beam_width=3, seed=1)
    expected = generate(sonnet_model, sonnet_vocab, PRIME, 6, SamplingOptions(method="beam", beam_width=3))
    assert beam_search(sonnet_model, sonnet_vocab, PRIME, 6, options) == expected


def test_beam_score_normalises_by_length():
    assert beam_score(-6.0, 3, 1.0) == -2.0
    assert beam_score(-6.0, 3, 0.0) == -6.0
    assert beam_score(-8.0, 4, 0.5) == -4.0
    assert beam_score(0.0, 0, 1.0) == 0.0


def test_beam_with_no_repeat_and_unknown_rules(looping_model, counting_vocab):
    options = SamplingOptions(method="beam", beam_width=3, no_repeat_ngram=2)
    result = generate(looping_model, counting_vocab, "one two", 15, options)
    assert len(result.words) == 15 and UNK_TOKEN not in result.words
    assert repeated_ngrams(result.prime_words + result.words, 2) == []


# ---- a next-word model (an n-gram) through the same samplers -------------------------------------


class _Table:
    """A next-word model whose distribution depends on the last word only, as a bigram's does."""

    def __init__(self, log_probs):
        self.table = log_probs  # (V, V): row = previous word
        self.contexts = []

    def next_log_probs(self, context_ids):
        self.contexts.append(list(context_ids))
        return self.table[context_ids[-1]]


def test_a_next_word_model_writes_through_the_same_rules_and_draws():
    from lstm_core.sampling.decoding import generate_next_word, make_generator, sample_index
    from lstm_core.sampling.options import SamplingOptions
    from lstm_core.text.vocab import Vocab

    vocab = Vocab(["<unk>", "thou", "art", "more", "fair"], [0, 4, 3, 2, 1])
    torch.manual_seed(0)
    table = torch.randn(5, 5).log_softmax(dim=-1)
    model = _Table(table)
    greedy = generate_next_word(model, vocab, "thou art", 6, SamplingOptions())
    expected, previous = [], vocab.index("art")
    for _ in range(6):
        scores = table[previous].clone()
        scores[0] = float("-inf")  # <unk> is skipped by default
        previous = int(scores.argmax())
        expected.append(vocab.itos[previous])
    assert greedy.words == expected and greedy.prime_words == ["thou", "art"]
    assert model.contexts[0] == [1, 2]  # the model sees the whole text so far
    sampled = generate_next_word(model, vocab, "thou art", 6, SamplingOptions(method="sample", seed=3))
    again = generate_next_word(model, vocab, "thou art", 6, SamplingOptions(method="sample", seed=3))
    assert sampled.words == again.words
    generator, previous, drawn = make_generator(3), 2, []
    for _ in range(6):
        scores = table[previous].clone()
        scores[0] = float("-inf")
        previous = sample_index(scores.log_softmax(dim=-1), generator)
        drawn.append(vocab.itos[previous])
    assert sampled.words == drawn  # one draw per word, as the LSTM's sampler makes
    with pytest.raises(ValueError, match="beam search works with the LSTM only"):
        generate_next_word(model, vocab, "thou", 3, SamplingOptions(method="beam"))
    with pytest.raises(ValueError, match="no words after cleaning"):  # the prime is read as the LSTM's is
        generate_next_word(model, vocab, "!!! ...", 3)
