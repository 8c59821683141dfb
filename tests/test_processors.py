"""Log-prob processors: the pure filters, each processor's own checks, and the list that applies them."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch

from lstm_core.errors import InputError
from lstm_core.sampling.decoding import make_generator, sample_index
from lstm_core.sampling.history import History
from lstm_core.sampling.options import SamplingOptions
from lstm_core.sampling.processors import (
    MinP,
    NoRepeatNgram,
    ProcessorList,
    RepetitionPenalty,
    Temperature,
    TopK,
    TopP,
    UnknownWordRule,
    filter_min_p,
    filter_top_k,
    filter_top_p,
    penalize_repetition,
)
from lstm_core.sampling.rules import GREEDY_TEMPERATURE, MIN_P_TOLERANCE, apply_temperature, descending_order
from lstm_core.text.vocab import UNK_INDEX


def transform(log_probs: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Temperature, then top-k, then top-p, as a sampling list applies them, on ``(V,)`` or ``(B, V)``."""
    processors = ProcessorList([Temperature(temperature), TopK(top_k), TopP(top_p)])
    rows = log_probs.reshape(-1, log_probs.size(-1))
    return processors(rows, [History()] * rows.size(0)).view_as(log_probs)


# ---- pure filters ------------------------------------------------------------------------------


def hand_made(*probs: float) -> torch.Tensor:
    return torch.tensor(probs, dtype=torch.float32).log()


def kept(log_probs: torch.Tensor) -> set[int]:
    return set(torch.nonzero(torch.isfinite(log_probs)).view(-1).tolist())


def test_temperature_to_zero_is_greedy():
    torch.manual_seed(0)
    log_probs = torch.randn(3, 40).log_softmax(-1)
    best = log_probs.argmax(-1)
    for temperature in (1e-9, 1e-5, GREEDY_TEMPERATURE):
        one_hot = transform(log_probs, temperature)
        assert torch.equal(one_hot.argmax(-1), best)
        assert torch.equal(one_hot.exp(), torch.nn.functional.one_hot(best, 40).float())
    # Just above the threshold: finite, normalised, and already concentrated on the argmax.
    cold = transform(log_probs, 1e-3)
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
    filtered = transform(log_probs, 1.0, top_k=5)
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
    assert kept(transform(log_probs, 1.0, top_k=2, top_p=0.5)) == {0}
    assert kept(transform(log_probs, 1.0, top_k=2, top_p=0.6)) == {0, 1}


def test_transforms_work_row_by_row_on_batches():
    torch.manual_seed(0)
    batch = (torch.randn(4, 300) * 2).log_softmax(-1)
    together = transform(batch, 0.7, top_k=30, top_p=0.8)
    for row, result in zip(batch, together, strict=True):
        torch.testing.assert_close(transform(row, 0.7, top_k=30, top_p=0.8), result)
    torch.testing.assert_close(together.exp().sum(-1), torch.ones(4))


def test_transform_rejects_bad_filters_and_does_not_modify_its_input():
    log_probs = hand_made(0.5, 0.5)
    copy = log_probs.clone()
    transform(log_probs, 0.5, top_k=1, top_p=0.5)
    assert torch.equal(log_probs, copy)
    with pytest.raises(InputError, match="top_p"):
        TopP(0)


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
    filtered = transform(log_probs, temperature, top_k)
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


# ---- min-p -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("probs", "min_p", "expected"),
    [
        ((0.5, 0.25, 0.125, 0.0625, 0.0625), 0.5, {0, 1}),  # 0.25 is exactly half the top word: kept
        ((0.5, 0.25, 0.125, 0.0625, 0.0625), 0.51, {0}),
        ((0.5, 0.25, 0.125, 0.0625, 0.0625), 0.13, {0, 1, 2}),
        ((0.5, 0.25, 0.125, 0.0625, 0.0625), 0.125, {0, 1, 2, 3, 4}),
        ((0.0625, 0.125, 0.5, 0.25, 0.0625), 0.25, {1, 2, 3}),  # order in the vector does not matter
        ((0.3, 0.3, 0.2, 0.2), 1.0, {0, 1}),  # min_p 1: the top word and the words tied with it
        ((0.4, 0.3, 0.2, 0.1), 0.3, {0, 1, 2}),  # 0.1 / 0.4 = 0.25 falls below
    ],
)
def test_min_p_keeps_exactly_the_words_at_least_min_p_times_as_likely_as_the_top(probs, min_p, expected):
    filtered = filter_min_p(hand_made(*probs), min_p)
    assert kept(filtered) == expected
    mass = sum(probs[i] for i in expected)
    torch.testing.assert_close(
        filtered.exp(), torch.tensor([p / mass if i in expected else 0.0 for i, p in enumerate(probs)])
    )


def test_min_p_on_random_distributions_matches_its_definition_row_by_row():
    generator = torch.Generator().manual_seed(0)
    for scale in (0.5, 2.0, 5.0):  # flat to peaked
        log_probs = (torch.randn(4, 3000, generator=generator) * scale).log_softmax(-1)
        probs = log_probs.double().exp()
        ratio = probs / probs.amax(-1, keepdim=True)  # (4, 3000)
        for min_p in (0.01, 0.1, 0.5):
            filtered = MinP(min_p)(log_probs, [History()] * 4)
            clear = (ratio - min_p).abs() > 10 * MIN_P_TOLERANCE * min_p  # away from float rounding at the edge
            assert torch.equal(torch.isfinite(filtered)[clear], (ratio >= min_p)[clear])
            torch.testing.assert_close(filtered.exp().sum(-1), torch.ones(4))
            for row, result in zip(log_probs, filtered, strict=True):
                torch.testing.assert_close(filter_min_p(row, min_p), result)  # rows are independent


def test_min_p_zero_is_off_and_sampling_never_draws_below_the_cut():
    log_probs = hand_made(0.5, 0.3, 0.14, 0.06)
    assert filter_min_p(log_probs, 0.0) is log_probs
    generator = make_generator(5)
    draws = Counter(sample_index(filter_min_p(log_probs, 0.3), generator) for _ in range(2000))
    assert set(draws) == {0, 1}  # 0.14 / 0.5 < 0.3


# ---- each processor ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "value", "field"),
    [
        (UnknownWordRule, "maybe", "unknown"),
        (RepetitionPenalty, 0.9, "repetition_penalty"),
        (RepetitionPenalty, float("inf"), "repetition_penalty"),
        (NoRepeatNgram, -1, "no_repeat_ngram"),
        (NoRepeatNgram, 1.5, "no_repeat_ngram"),
        (Temperature, 0.0, "temperature"),
        (Temperature, True, "temperature"),
        (TopK, -1, "top_k"),
        (TopK, 1001, "top_k"),
        (TopK, "5", "top_k"),
        (TopP, 0.0, "top_p"),
        (TopP, 1.01, "top_p"),
        (MinP, -0.01, "min_p"),
        (MinP, float("nan"), "min_p"),
    ],
)
def test_each_processor_checks_its_own_argument(kind, value, field):
    with pytest.raises(InputError, match=field):
        kind(value)


def test_unknown_rule_skip_removes_unk_stop_ends_the_text_allow_does_nothing():
    log_probs = hand_made(0.5, 0.25, 0.25).view(1, 3)
    histories = [History()]
    skipped = UnknownWordRule("skip")(log_probs, histories)
    torch.testing.assert_close(skipped.exp(), torch.tensor([[0.0, 0.5, 0.5]]))
    for rule in ("stop", "allow"):
        assert UnknownWordRule(rule)(log_probs, histories) is log_probs
    assert UnknownWordRule("stop").stop_ids == {UNK_INDEX}
    assert UnknownWordRule("skip").stop_ids == UnknownWordRule("allow").stop_ids == frozenset()
    assert ProcessorList.from_options(SamplingOptions(unknown="stop")).stop_ids == {UNK_INDEX}


def test_repetition_and_ngram_rules_read_each_rows_own_history():
    log_probs = torch.full((2, 5), -math.log(5))
    histories = [History([1, 2, 1]), History([3])]
    penalised = RepetitionPenalty(4.0)(log_probs, histories).exp()
    torch.testing.assert_close(penalised[0], torch.tensor([4.0, 1.0, 1.0, 4.0, 4.0]) / 14)
    torch.testing.assert_close(penalised[1], torch.tensor([4.0, 4.0, 4.0, 1.0, 4.0]) / 17)
    banned = NoRepeatNgram(2)(log_probs, histories)  # row 0: "1" was followed by 2; row 1: nothing yet
    assert kept(banned[0]) == {0, 1, 3, 4} and kept(banned[1]) == set(range(5))
    assert NoRepeatNgram(2)(log_probs, [History(), History()]) is log_probs


def test_a_no_repeat_ban_that_would_leave_no_word_is_lifted():
    log_probs = torch.tensor([[float("-inf"), 0.0, float("-inf")]])  # only word 1 is possible ...
    history = History([1, 1])  # ... and it would repeat the bigram "1 1"
    assert torch.equal(NoRepeatNgram(2)(log_probs, [history]), log_probs)


def test_processors_never_modify_their_input():
    log_probs = torch.randn(2, 30).log_softmax(-1)
    copy = log_probs.clone()
    options = SamplingOptions(
        method="sample", top_k=5, top_p=0.8, min_p=0.1, repetition_penalty=2.0, no_repeat_ngram=1, temperature=0.7
    )
    ProcessorList.from_options(options).stages(log_probs, [History([1, 2]), History([3])])
    assert torch.equal(log_probs, copy)


# ---- the list -----------------------------------------------------------------------------------

EVERYTHING = SamplingOptions(
    method="sample",
    temperature=0.8,
    top_k=10,
    top_p=0.9,
    min_p=0.05,
    repetition_penalty=1.3,
    no_repeat_ngram=2,
    unknown="skip",
)


def test_the_list_runs_in_pipeline_order_and_leaves_out_what_is_off():
    kinds = [type(p) for p in ProcessorList.from_options(EVERYTHING)]
    assert kinds == [UnknownWordRule, RepetitionPenalty, NoRepeatNgram, Temperature, TopK, TopP, MinP]
    assert [type(p) for p in ProcessorList.from_options(SamplingOptions(method="sample"))] == [
        UnknownWordRule,
        Temperature,  # always there when sampling: it also normalises
    ]
    assert list(ProcessorList.from_options(SamplingOptions(unknown="allow"))) == []  # greedy: the model's argmax


@pytest.mark.parametrize("method", ["greedy", "beam"])
def test_the_filters_apply_to_sampling_only(method):
    options = SamplingOptions(**{**vars(EVERYTHING), "method": method})
    assert [type(p) for p in ProcessorList.from_options(options)] == [UnknownWordRule, RepetitionPenalty, NoRepeatNgram]


def test_stages_show_each_step_and_end_with_what_is_sampled():
    log_probs = torch.randn(1, 60, generator=torch.Generator().manual_seed(3)).mul(3).log_softmax(-1)
    histories = [History([4, 5, 4])]
    processors = ProcessorList.from_options(EVERYTHING)
    stages = processors.stages(log_probs, histories)
    assert [name for name, _ in stages] == [
        "model",
        "<unk>: skip",
        "repetition penalty 1.3",
        "no repeated 2-grams",
        "temperature 0.8",
        "top-k 10",
        "top-p 0.9",
        "min-p 0.05",
    ]
    assert stages[0][1] is log_probs
    assert torch.equal(stages[-1][1], processors(log_probs, histories))
    for (_, before), processor, (_, after) in zip(stages[:-1], processors, stages[1:], strict=True):
        assert torch.equal(processor(before, histories), after)
        torch.testing.assert_close(after.exp().sum(-1), torch.ones(1))
    assert len(kept(stages[-1][1][0])) <= 10


def test_the_filters_never_change_the_most_likely_word():
    """Why greedy and beam search may leave the filters out: each keeps the top word on top."""
    generator = torch.Generator().manual_seed(1)
    log_probs = (torch.randn(8, 500, generator=generator) * 2).log_softmax(-1)
    filters = ProcessorList([Temperature(0.3), TopK(3), TopP(0.2), MinP(0.9)])
    for processor in filters:
        after = processor(log_probs, [History()] * 8)
        assert torch.equal(after.argmax(-1), log_probs.argmax(-1)), processor


def test_a_processor_of_ones_own_joins_a_list():
    class BanWord:
        name = "ban word 2"
        stop_ids = frozenset({1})

        def __call__(self, log_probs, histories):
            return log_probs.index_fill(-1, torch.tensor([2]), float("-inf")).log_softmax(-1)

    processors = ProcessorList([*ProcessorList.from_options(SamplingOptions(unknown="stop")), BanWord()])
    assert processors.stop_ids == {UNK_INDEX, 1}
    assert kept(processors(hand_made(0.25, 0.25, 0.25, 0.25).view(1, 4), [History()])[0]) == {0, 1, 3}
    assert [name for name, _ in processors.stages(torch.zeros(1, 4), [History()])] == [
        "model",
        "<unk>: stop",
        "ban word 2",
    ]
