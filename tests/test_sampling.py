"""Samplers, generation, beam search and scoring: exact and statistical properties.

Models are tiny (16-24 LSTM units) and either randomly initialised with a fixed seed or trained
for a few dozen Adam steps on a tiny text inside a module-scoped fixture, so the whole file runs
in seconds on a CPU.
"""

from __future__ import annotations

import math
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from lstm_core.config import Config
from lstm_core.model import LSTMLanguageModel
from lstm_core.sampling import (
    GREEDY_TEMPERATURE,
    NgramIndex,
    SamplingOptions,
    StepGenerator,
    apply_temperature,
    banned_ngram_words,
    beam_score,
    beam_search,
    descending_order,
    filter_top_k,
    filter_top_p,
    generate,
    make_generator,
    penalize_repetition,
    sample_index,
    score,
    transform_log_probs,
    word_distribution,
)
from lstm_core.text import tokenize
from lstm_core.vocab import UNK_INDEX, UNK_TOKEN, Vocab
from tests.conftest import SONNET

LAYERS = ["full", "adaptive"]
PRIME = "shall i compare thee"


# ---- helpers and fixtures ------------------------------------------------------------------


def make_model(vocab_size: int, output_layer: str = "full", rnn_size: int = 16, seed: int = 0, **changes):
    torch.manual_seed(seed)
    config = Config(rnn_size=rnn_size, num_layers=1, output_layer=output_layer, **changes)
    return LSTMLanguageModel(vocab_size, config).eval()


def train(model: LSTMLanguageModel, ids: list[int], steps: int, seq_len: int = 8, lr: float = 0.03) -> None:
    """A few Adam steps on random windows of ``ids``: enough for a peaked, text-like distribution."""
    torch.manual_seed(1)
    data = torch.tensor(ids)
    windows = data.unfold(0, seq_len + 1, 1)  # (N, seq_len + 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        batch = windows[torch.randint(len(windows), (16,))]
        hidden, _ = model(batch[:, :-1])
        loss = model.loss(hidden, batch[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()


def sequence_log_prob(model: LSTMLanguageModel, vocab: Vocab, prime: str, words: list[str]) -> float:
    """log p(words | prime) under the model, from one batched forward pass."""
    ids = vocab.encode(tokenize(prime) + words)
    with torch.no_grad():
        hidden, _ = model(torch.tensor([ids[:-1]]))
        log_probs = model.log_probs(hidden[0])
    targets = torch.tensor(ids[1:])
    picked = log_probs.gather(1, targets[:, None])[:, 0]
    return float(picked[len(ids) - 1 - len(words) :].double().sum())


def repeated_ngrams(words: list[str], n: int) -> list[tuple[str, ...]]:
    counts = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    return [gram for gram, count in counts.items() if count > 1]


def favour_unknown(
    model: LSTMLanguageModel, monkeypatch: pytest.MonkeyPatch, bonus: float = 30.0, only_call: int | None = None
) -> None:
    """Make ``<unk>`` the model's top choice at every step, or at the ``only_call``-th log-probs call only.

    Generation calls ``log_probs`` once for the prime and once per word after it, so
    ``only_call=5`` makes ``<unk>`` the top choice for the 5th generated word.
    """
    original = model.log_probs
    calls = 0

    def log_probs(hidden: torch.Tensor) -> torch.Tensor:
        nonlocal calls
        calls += 1
        scores = original(hidden).clone()
        if only_call is None or calls == only_call:
            scores[..., UNK_INDEX] += bonus
        return scores.log_softmax(dim=-1)

    monkeypatch.setattr(model, "log_probs", log_probs)


class ForwardCounter:
    """Records the ``ids`` shape ``(B, T)`` of every model call: forward passes and single steps."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.shapes: list[tuple[int, ...]] = []
        self.model = model
        self.handle = model.register_forward_hook(lambda module, args, output: self.shapes.append(tuple(args[0].shape)))
        real_step = model.step

        def step(ids: torch.Tensor, state=None):
            self.shapes.append((ids.size(0), 1))
            return real_step(ids, state)

        model.step = step

    def __enter__(self) -> ForwardCounter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.remove()
        del self.model.step  # back to the class's method


@pytest.fixture(scope="module")
def sonnet_vocab() -> Vocab:
    return Vocab.build(tokenize(SONNET), 0)


@pytest.fixture(scope="module", params=LAYERS)
def sonnet_model(request, sonnet_vocab) -> LSTMLanguageModel:
    """A 24-unit model trained briefly on sonnet 18 (both output layers)."""
    model = make_model(len(sonnet_vocab), request.param, rnn_size=24)
    train(model, sonnet_vocab.encode(tokenize(SONNET * 3)), steps=60)
    return model


@pytest.fixture(scope="module")
def counting_vocab() -> Vocab:
    words = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"]
    return Vocab([UNK_TOKEN, *words])


@pytest.fixture(scope="module")
def looping_model(counting_vocab) -> LSTMLanguageModel:
    """A model that has only ever seen 'one two three one two three ...': greedy loops."""
    model = make_model(len(counting_vocab))
    train(model, counting_vocab.encode(("one two three " * 40).split()), steps=80)
    return model


# ---- options ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"temperature": 0}, "temperature"),
        ({"temperature": -1.0}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"top_k": -1}, "top_k"),
        ({"top_k": 2.5}, "top_k"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"repetition_penalty": 0.5}, "repetition_penalty"),
        ({"no_repeat_ngram": -1}, "no_repeat_ngram"),
        ({"beam_width": 0}, "beam_width"),
        ({"length_penalty": -1.0}, "length_penalty"),
        ({"unknown": "maybe"}, "unknown"),
        ({"method": "nucleus"}, "method"),
        ({"seed": -1}, "seed"),
        ({"seed": "42"}, "seed"),
    ],
)
def test_bad_options_are_refused_with_the_field_named(changes, field):
    with pytest.raises(ValueError, match=field):
        SamplingOptions(**changes)


def test_default_options_are_valid_and_greedy():
    options = SamplingOptions()
    assert options.method == "greedy" and options.unknown == "skip" and options.problems() == []


# ---- pure transforms -----------------------------------------------------------------------


def hand_made(*probs: float) -> torch.Tensor:
    return torch.tensor(probs, dtype=torch.float32).log()


def kept(log_probs: torch.Tensor) -> set[int]:
    return set(torch.nonzero(torch.isfinite(log_probs)).view(-1).tolist())


def test_temperature_to_zero_is_greedy():
    torch.manual_seed(0)
    log_probs = torch.randn(3, 40).log_softmax(-1)
    best = log_probs.argmax(-1)
    for temperature in (1e-9, 1e-5, GREEDY_TEMPERATURE):
        one_hot = transform_log_probs(log_probs, temperature)
        assert torch.equal(one_hot.argmax(-1), best)
        assert torch.equal(one_hot.exp(), torch.nn.functional.one_hot(best, 40).float())
    # Just above the threshold: finite, normalised, and already concentrated on the argmax.
    cold = transform_log_probs(log_probs, 1e-3)
    assert not torch.isnan(cold).any()
    torch.testing.assert_close(cold.exp().sum(-1), torch.ones(3))
    assert torch.equal(cold.argmax(-1), best)


def test_temperature_scales_log_probs():
    log_probs = hand_made(0.5, 0.3, 0.2)
    hot = apply_temperature(log_probs, 2.0).exp()
    expected = torch.tensor([0.5, 0.3, 0.2]) ** 0.5
    torch.testing.assert_close(hot, expected / expected.sum())


def test_top_k_keeps_exactly_the_k_best_and_breaks_ties_to_the_lower_index():
    log_probs = hand_made(0.1, 0.3, 0.2, 0.2, 0.2)
    assert kept(filter_top_k(log_probs, 1)) == {1}
    assert kept(filter_top_k(log_probs, 2)) == {1, 2}
    assert kept(filter_top_k(log_probs, 3)) == {1, 2, 3}
    assert kept(filter_top_k(log_probs, 0)) == set(range(5))
    torch.testing.assert_close(filter_top_k(log_probs, 2).exp(), torch.tensor([0.0, 0.6, 0.4, 0.0, 0.0]))


def test_top_k_never_samples_outside_the_k_best():
    torch.manual_seed(0)
    log_probs = (torch.randn(50) * 0.5).log_softmax(-1)
    best = set(torch.topk(log_probs, 5).indices.tolist())
    filtered = transform_log_probs(log_probs, 1.0, top_k=5)
    generator = make_generator(3)
    draws = Counter(sample_index(filtered, generator) for _ in range(3000))
    assert set(draws) == best


@pytest.mark.parametrize(
    ("probs", "top_p", "expected"),
    [
        ((0.5, 0.25, 0.125, 0.0625, 0.0625), 0.01, {0}),
        ((0.5, 0.25, 0.125, 0.0625, 0.0625), 0.5, {0}),  # mass exactly p: the first word suffices
        ((0.5, 0.25, 0.125, 0.0625, 0.0625), 0.5001, {0, 1}),
        ((0.5, 0.25, 0.125, 0.0625, 0.0625), 0.75, {0, 1}),
        ((0.5, 0.25, 0.125, 0.0625, 0.0625), 0.76, {0, 1, 2}),
        ((0.5, 0.25, 0.125, 0.0625, 0.0625), 0.9375, {0, 1, 2, 3}),  # ties at the end: lower index
        ((0.5, 0.25, 0.125, 0.0625, 0.0625), 0.94, {0, 1, 2, 3, 4}),
        ((0.5, 0.25, 0.125, 0.0625, 0.0625), 1.0, {0, 1, 2, 3, 4}),
        ((0.0625, 0.125, 0.0625, 0.25, 0.5), 0.75, {3, 4}),  # order in the vector does not matter
        ((0.25, 0.25, 0.25, 0.25), 0.5, {0, 1}),  # a tie: the smallest set, lower indices first
        ((0.25, 0.25, 0.25, 0.25), 0.51, {0, 1, 2}),
        ((0.4, 0.3, 0.2, 0.1), 0.7, {0, 1}),  # 0.4 + 0.3 is 0.7 only up to float rounding
        ((0.4, 0.3, 0.2, 0.1), 0.9, {0, 1, 2}),
    ],
)
def test_top_p_keeps_the_smallest_set_reaching_p(probs, top_p, expected):
    filtered = filter_top_p(hand_made(*probs), top_p)
    assert kept(filtered) == expected
    mass = sum(probs[i] for i in expected)
    torch.testing.assert_close(
        filtered.exp(), torch.tensor([p / mass if i in expected else 0.0 for i, p in enumerate(probs)])
    )


def test_top_p_on_a_large_vocabulary_matches_a_full_sort():
    torch.manual_seed(0)
    for scale in (0.1, 1.0, 4.0):  # flat to peaked: the search widens 64 -> 512 -> all
        log_probs = (torch.randn(7000) * scale).log_softmax(-1)
        for top_p in (0.3, 0.9, 0.99):
            order = torch.sort(log_probs, descending=True, stable=True).indices
            mass_before = torch.cumsum(log_probs[order].double().exp(), 0) - log_probs[order].double().exp()
            expected = set(order[mass_before < top_p].tolist())
            assert kept(filter_top_p(log_probs, top_p)) == expected


def test_top_k_then_top_p_uses_the_renormalised_top_k_mass():
    log_probs = hand_made(0.4, 0.3, 0.2, 0.1)
    # After top-2 the distribution is (4/7, 3/7): p = 0.5 needs only the first word, p = 0.6 both.
    assert kept(transform_log_probs(log_probs, 1.0, top_k=2, top_p=0.5)) == {0}
    assert kept(transform_log_probs(log_probs, 1.0, top_k=2, top_p=0.6)) == {0, 1}


def test_transforms_work_row_by_row_on_batches():
    torch.manual_seed(0)
    batch = (torch.randn(4, 300) * 2).log_softmax(-1)
    together = transform_log_probs(batch, 0.7, top_k=30, top_p=0.8)
    for row, result in zip(batch, together, strict=True):
        torch.testing.assert_close(transform_log_probs(row, 0.7, top_k=30, top_p=0.8), result)
    torch.testing.assert_close(together.exp().sum(-1), torch.ones(4))


def test_transform_rejects_bad_filters_and_does_not_modify_its_input():
    log_probs = hand_made(0.5, 0.5)
    copy = log_probs.clone()
    transform_log_probs(log_probs, 0.5, top_k=1, top_p=0.5)
    assert torch.equal(log_probs, copy)
    with pytest.raises(ValueError, match="top_p"):
        transform_log_probs(log_probs, top_p=0)


def test_descending_order_equals_a_stable_sort_even_with_ties():
    generator = torch.Generator().manual_seed(0)
    for _ in range(100):
        values = torch.randint(0, 6, (60,), generator=generator).float()
        values[torch.rand(60, generator=generator) < 0.2] = float("-inf")
        for count in (1, 5, 20, 59, 60):
            expected = torch.sort(values, descending=True, stable=True).indices[:count]
            assert torch.equal(descending_order(values, count), expected)


def chi_square(counts: Counter, expected: list[float], draws: int) -> float:
    return sum((counts[i] - draws * p) ** 2 / (draws * p) for i, p in enumerate(expected))


@pytest.mark.parametrize(
    ("temperature", "top_k", "expected"),
    [
        (1.0, 0, [0.5, 0.25, 0.15, 0.07, 0.03]),
        (2.0, 0, [p**0.5 / sum(q**0.5 for q in (0.5, 0.25, 0.15, 0.07, 0.03)) for p in (0.5, 0.25, 0.15, 0.07, 0.03)]),
        (1.0, 2, [2 / 3, 1 / 3, 0.0, 0.0, 0.0]),  # filtered: sample_index draws among the 2 left
    ],
)
def test_sampled_frequencies_match_the_distribution(temperature, top_k, expected):
    log_probs = hand_made(0.5, 0.25, 0.15, 0.07, 0.03)
    filtered = transform_log_probs(log_probs, temperature, top_k)
    generator = make_generator(1234)
    draws = 20_000
    counts = Counter(sample_index(filtered, generator) for _ in range(draws))
    support = [p for p in expected if p > 0]
    assert set(counts) == {i for i, p in enumerate(expected) if p > 0}
    # 99.9% critical value of chi-square with len(support) - 1 degrees of freedom (4: 18.47, 1: 10.83).
    critical = {4: 18.47, 1: 10.83}[len(support) - 1]
    assert chi_square(counts, support, draws) < critical


def test_repetition_penalty_divides_seen_words_probability():
    probs = torch.tensor([0.4, 0.3, 0.2, 0.1])
    seen = torch.tensor([True, False, True, False])
    penalised = penalize_repetition(probs.log(), seen, 2.0).exp()
    expected = torch.tensor([0.2, 0.3, 0.1, 0.1]) / 0.7
    torch.testing.assert_close(penalised, expected)
    assert (penalised[seen] < probs[seen]).all() and (penalised[~seen] > probs[~seen]).all()
    assert torch.equal(penalize_repetition(probs.log(), seen, 1.0), probs.log())


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


def test_generation_reports_the_prime_and_its_unknown_words(sonnet_model, sonnet_vocab):
    result = generate(sonnet_model, sonnet_vocab, "Thou ZOUNDS art, xyzzy zounds!", 4)
    assert result.prime_words == ["thou", "zounds", "art", "xyzzy", "zounds"]
    assert result.unknown_words == ["zounds", "xyzzy"]
    assert len(result.words) == 4 and UNK_TOKEN not in result.words
    assert result.text == "thou zounds art xyzzy zounds " + result.continuation
    assert result.continuation == " ".join(result.words)


def test_unknown_prime_words_are_fed_as_unk(sonnet_model, sonnet_vocab):
    stepper = StepGenerator(sonnet_model, sonnet_vocab, "thou zounds art")
    ids = [sonnet_vocab.index("thou"), UNK_INDEX, sonnet_vocab.index("art")]
    with torch.no_grad():
        hidden, _ = sonnet_model(torch.tensor([ids]))
        expected = sonnet_model.log_probs(hidden[0, -1])
    torch.testing.assert_close(stepper.log_probs, expected)


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


@pytest.mark.parametrize(
    "options",
    [
        SamplingOptions(),
        SamplingOptions(method="sample", seed=5),
        SamplingOptions(method="sample", temperature=1.7, seed=6),
        SamplingOptions(method="sample", temperature=0.8, top_k=5, top_p=0.9, seed=7),
        SamplingOptions(method="sample", repetition_penalty=1.5, no_repeat_ngram=2, unknown="allow", seed=8),
        SamplingOptions(repetition_penalty=2.0, no_repeat_ngram=3),
    ],
)
def test_step_by_step_equals_one_shot_generation(sonnet_model, sonnet_vocab, options):
    one_shot = generate(sonnet_model, sonnet_vocab, PRIME, 12, options)
    stepper = StepGenerator(sonnet_model, sonnet_vocab, PRIME)
    stepped = [stepper.step(options=options) for _ in range(12)]
    assert stepped == stepper.words == one_shot.words
    assert stepper.text == one_shot.text


def test_sampling_with_a_seed_is_reproducible_and_seeds_differ(sonnet_model, sonnet_vocab):
    def run(seed: int) -> list[str]:
        return generate(sonnet_model, sonnet_vocab, PRIME, 20, SamplingOptions(method="sample", seed=seed)).words

    assert run(1) == run(1)
    assert run(1) != run(2)


def test_top_k_generation_stays_within_the_k_best(sonnet_model, sonnet_vocab):
    options = SamplingOptions(method="sample", top_k=3, temperature=2.0, seed=0)
    stepper = StepGenerator(sonnet_model, sonnet_vocab, PRIME)
    for _ in range(30):
        allowed = {c.word for c in stepper.distribution(top_k=3, n=10).candidates}
        assert len(allowed) == 3
        assert stepper.step(options=options) in allowed


# ---- step-by-step state --------------------------------------------------------------------


def test_undo_restores_the_exact_state_and_random_stream(sonnet_model, sonnet_vocab):
    options = SamplingOptions(method="sample", seed=3)
    stepper = StepGenerator(sonnet_model, sonnet_vocab, PRIME)
    stepper.step(options=options)
    stepper.step("thee")
    log_probs, (h, c), words = stepper.log_probs, stepper.state, stepper.words
    next_word = stepper.step(options=options)
    after = stepper.step(options=options)
    stepper.undo()
    stepper.undo()
    assert stepper.words == words
    assert torch.equal(stepper.log_probs, log_probs)
    assert torch.equal(stepper.state[0], h) and torch.equal(stepper.state[1], c)
    assert stepper.step(options=options) == next_word
    assert stepper.step(options=options) == after


def test_undo_back_to_the_prime_and_past_it(sonnet_model, sonnet_vocab):
    stepper = StepGenerator(sonnet_model, sonnet_vocab, PRIME)
    start = stepper.log_probs
    assert not stepper.can_undo
    with pytest.raises(ValueError, match="nothing to undo"):
        stepper.undo()
    stepper.step()
    stepper.step("summer's")
    stepper.undo()
    stepper.undo()
    assert stepper.words == [] and torch.equal(stepper.log_probs, start)


def test_reset_goes_back_to_just_after_the_prime(sonnet_model, sonnet_vocab):
    options = SamplingOptions(method="sample", seed=11)
    stepper = StepGenerator(sonnet_model, sonnet_vocab, PRIME)
    start_log_probs, start_state = stepper.log_probs, stepper.state
    first = [stepper.step(options=options) for _ in range(5)]
    with ForwardCounter(sonnet_model) as counter:
        stepper.reset()
    assert counter.shapes == []
    assert stepper.words == [] and not stepper.can_undo
    assert torch.equal(stepper.log_probs, start_log_probs) and torch.equal(stepper.state[0], start_state[0])
    assert [stepper.step(options=options) for _ in range(5)] == first


def test_step_with_a_chosen_word(sonnet_model, sonnet_vocab):
    stepper = StepGenerator(sonnet_model, sonnet_vocab, PRIME)
    assert stepper.step("Thou") == "thou"  # cleaned like the prime
    assert stepper.words == ["thou"]
    with pytest.raises(ValueError, match="'zounds' is not in the model's vocabulary"):
        stepper.step("zounds")
    with pytest.raises(ValueError, match="regenerate"):
        stepper.step(options=SamplingOptions(method="beam"))
    assert stepper.words == ["thou"]


def test_distribution_is_cheap_and_matches_the_softmax(sonnet_model, sonnet_vocab):
    stepper = StepGenerator(sonnet_model, sonnet_vocab, PRIME)
    log_probs = stepper.log_probs
    with ForwardCounter(sonnet_model) as counter:
        for temperature in (0.5, 1.0, 2.0):
            everything = stepper.distribution(temperature, n=5, allow_unknown=True)
            expected = torch.softmax(log_probs / temperature, -1)
            top = torch.topk(expected, 5)
            assert [c.index for c in everything.candidates] == top.indices.tolist()
            for candidate in everything.candidates:
                assert candidate.word == sonnet_vocab.itos[candidate.index]
                assert candidate.probability == pytest.approx(float(expected[candidate.index]), abs=1e-6)
            assert sum(c.probability for c in everything.candidates) + everything.rest == pytest.approx(1.0)

            known = stepper.distribution(temperature, n=5)
            without_unknown = torch.softmax(log_probs[1:] / temperature, -1)
            assert all(c.index != UNK_INDEX for c in known.candidates)
            for candidate in known.candidates:
                assert candidate.probability == pytest.approx(float(without_unknown[candidate.index - 1]), abs=1e-6)
            assert sum(c.probability for c in known.candidates) + known.rest == pytest.approx(1.0)
        filtered = stepper.distribution(top_k=2, n=10)
    assert counter.shapes == []  # no model call
    assert len(filtered.candidates) == 2 and filtered.rest == pytest.approx(0.0, abs=1e-6)
    probabilities = [c.probability for c in filtered.candidates]
    assert probabilities == sorted(probabilities, reverse=True)
    with pytest.raises(ValueError, match="n must be"):
        stepper.distribution(n=0)


def test_full_distribution_sums_to_one(sonnet_model, sonnet_vocab):
    stepper = StepGenerator(sonnet_model, sonnet_vocab, PRIME)
    assert float(stepper.log_probs.exp().sum()) == pytest.approx(1.0, abs=1e-5)
    everything = stepper.distribution(n=len(sonnet_vocab), allow_unknown=True)
    assert len(everything.candidates) == len(sonnet_vocab)
    assert sum(c.probability for c in everything.candidates) == pytest.approx(1.0, abs=1e-5)
    assert everything.rest == pytest.approx(0.0, abs=1e-5)


def test_word_distribution_is_a_pure_function(sonnet_vocab):
    log_probs = torch.full((len(sonnet_vocab),), -math.log(len(sonnet_vocab)))
    result = word_distribution(log_probs, sonnet_vocab, n=3, allow_unknown=True)
    assert [c.index for c in result.candidates] == [0, 1, 2]  # ties: lower index first
    assert result.rest == pytest.approx(1 - 3 / len(sonnet_vocab))


def test_regenerate_is_reproducible_and_never_refeeds_the_prime(sonnet_model, sonnet_vocab):
    with ForwardCounter(sonnet_model) as counter:
        stepper = StepGenerator(sonnet_model, sonnet_vocab, PRIME)
    assert counter.shapes == [(1, 4)]  # the prime, once
    stepper.step()
    position, log_probs = stepper.words, stepper.log_probs
    options = SamplingOptions(method="sample", seed=21)
    with ForwardCounter(sonnet_model) as counter:
        first = stepper.regenerate(10, options)
        second = stepper.regenerate(10, options)
    assert counter.shapes == [(1, 1)] * 18  # 9 single-word steps each, nothing longer
    assert first == second and len(first.words) == 10
    assert first == generate(sonnet_model, sonnet_vocab, PRIME, 10, options)
    assert stepper.words == position and torch.equal(stepper.log_probs, log_probs)  # step position untouched


def test_regenerate_across_temperatures_moves_from_greedy_to_random(sonnet_model, sonnet_vocab):
    stepper = StepGenerator(sonnet_model, sonnet_vocab, PRIME)
    greedy = stepper.regenerate(20, SamplingOptions()).words
    runs = {
        t: stepper.regenerate(20, SamplingOptions(method="sample", temperature=t, seed=4)).words for t in (0.01, 2.0)
    }
    assert runs[0.01] == greedy
    assert runs[2.0] != greedy


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


def test_skip_takes_the_next_best_word(sonnet_vocab, monkeypatch):
    model = make_model(len(sonnet_vocab))
    favour_unknown(model, monkeypatch)
    stepper = StepGenerator(model, sonnet_vocab, PRIME)
    runner_up = int(torch.topk(stepper.log_probs, 2).indices[1])
    assert stepper.step() == sonnet_vocab.itos[runner_up]


def test_a_stopping_step_changes_nothing(sonnet_vocab, monkeypatch):
    model = make_model(len(sonnet_vocab))
    favour_unknown(model, monkeypatch)
    stepper = StepGenerator(model, sonnet_vocab, PRIME)
    stepper.step("thou")
    before = stepper.log_probs
    for options in (SamplingOptions(unknown="stop"), SamplingOptions(method="sample", unknown="stop", seed=1)):
        assert stepper.step(options=options) == UNK_TOKEN
    assert stepper.words == ["thou"] and torch.equal(stepper.log_probs, before)


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


# ---- scoring -----------------------------------------------------------------------------------


def test_score_agrees_with_the_models_loss(sonnet_model, sonnet_vocab):
    text = "Shall I compare thee to a zounds summer's day? Thou art more lovely"
    result = score(sonnet_model, sonnet_vocab, text)
    words = tokenize(text)
    ids = torch.tensor([sonnet_vocab.encode(words)])
    with torch.no_grad():
        hidden, _ = sonnet_model(ids[:, :-1])
        nll = sonnet_model.token_nll(hidden, ids[:, 1:])[0]
        log_probs = sonnet_model.log_probs(hidden[0])
    assert [w.word for w in result.words] == words[1:]
    assert result.mean_nll == pytest.approx(float(nll.mean()), rel=1e-5)
    assert result.perplexity == pytest.approx(math.exp(result.mean_nll), rel=1e-12)
    for position, word in enumerate(result.words):
        assert word.index == int(ids[0, position + 1])
        assert word.known == (word.word != "zounds")
        assert word.probability == pytest.approx(math.exp(-float(nll[position])), rel=1e-5)
        assert word.surprisal == pytest.approx(-math.log2(word.probability), rel=1e-9)
        row = log_probs[position]
        assert word.rank == 1 + int((row > row[word.index]).sum())
        assert (word.rank == 1) == (int(row.argmax()) == word.index)


def test_score_in_blocks_equals_score_at_once(sonnet_model, sonnet_vocab, monkeypatch):
    text = SONNET[:300]
    whole = score(sonnet_model, sonnet_vocab, text)
    monkeypatch.setattr("lstm_core.sampling._SCORE_BLOCK", 7)
    blocked = score(sonnet_model, sonnet_vocab, text)
    assert [w.rank for w in blocked.words] == [w.rank for w in whole.words]
    assert blocked.mean_nll == pytest.approx(whole.mean_nll, rel=1e-6)


def test_score_gives_rank_one_to_the_argmax(sonnet_model, sonnet_vocab):
    stepper = StepGenerator(sonnet_model, sonnet_vocab, PRIME)
    best = sonnet_vocab.itos[int(stepper.log_probs[1:].argmax()) + 1]
    result = score(sonnet_model, sonnet_vocab, f"{PRIME} {best}")
    assert result.words[-1].word == best and result.words[-1].rank == 1


@pytest.mark.parametrize("text", ["", "?!", "thou"])
def test_score_needs_two_words(sonnet_model, sonnet_vocab, text):
    with pytest.raises(ValueError, match="at least two words"):
        score(sonnet_model, sonnet_vocab, text)
