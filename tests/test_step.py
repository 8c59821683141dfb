"""Step-by-step generation: the state a UI keeps, undo and reset, the candidates it shows, the caps."""

from __future__ import annotations

import math

import pytest
import torch

from lstm_core.errors import InputError
from lstm_core.sampling.decoding import MAX_LENGTH, generate
from lstm_core.sampling.options import SamplingOptions
from lstm_core.sampling.step import UNDO_LIMIT, StepGenerator, word_distribution
from lstm_core.text.vocab import UNK_INDEX, UNK_TOKEN
from tests.language_models import PRIME, ForwardCounter, favour_unknown, make_model


def sampled(**changes) -> SamplingOptions:
    return SamplingOptions(method="sample", **changes)


def test_unknown_prime_words_are_fed_as_unk(sonnet_model, sonnet_vocab):
    stepper = StepGenerator(sonnet_model, sonnet_vocab, "thou zounds art")
    ids = [sonnet_vocab.index("thou"), UNK_INDEX, sonnet_vocab.index("art")]
    with torch.no_grad():
        hidden, _ = sonnet_model(torch.tensor([ids]))
        expected = sonnet_model.log_probs(hidden[0, -1])
    torch.testing.assert_close(stepper.log_probs, expected)


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


def test_top_k_generation_stays_within_the_k_best(sonnet_model, sonnet_vocab):
    options = SamplingOptions(method="sample", top_k=3, temperature=2.0, seed=0)
    stepper = StepGenerator(sonnet_model, sonnet_vocab, PRIME)
    for _ in range(30):
        allowed = {c.word for c in stepper.distribution(options, n=10).candidates}
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
            everything = stepper.distribution(sampled(temperature=temperature, unknown="allow"), n=5)
            expected = torch.softmax(log_probs / temperature, -1)
            top = torch.topk(expected, 5)
            assert [c.index for c in everything.candidates] == top.indices.tolist()
            for candidate in everything.candidates:
                assert candidate.word == sonnet_vocab.itos[candidate.index]
                assert candidate.probability == pytest.approx(float(expected[candidate.index]), abs=1e-6)
            assert sum(c.probability for c in everything.candidates) + everything.rest == pytest.approx(1.0)

            known = stepper.distribution(sampled(temperature=temperature), n=5)
            without_unknown = torch.softmax(log_probs[1:] / temperature, -1)
            assert all(c.index != UNK_INDEX for c in known.candidates)
            for candidate in known.candidates:
                assert candidate.probability == pytest.approx(float(without_unknown[candidate.index - 1]), abs=1e-6)
            assert sum(c.probability for c in known.candidates) + known.rest == pytest.approx(1.0)
        filtered = stepper.distribution(sampled(top_k=2), n=10)
    assert counter.shapes == []  # no model call
    assert len(filtered.candidates) == 2 and filtered.rest == pytest.approx(0.0, abs=1e-6)
    probabilities = [c.probability for c in filtered.candidates]
    assert probabilities == sorted(probabilities, reverse=True)
    with pytest.raises(ValueError, match="n must be"):
        stepper.distribution(n=0)


def test_full_distribution_sums_to_one(sonnet_model, sonnet_vocab):
    stepper = StepGenerator(sonnet_model, sonnet_vocab, PRIME)
    assert float(stepper.log_probs.exp().sum()) == pytest.approx(1.0, abs=1e-5)
    everything = stepper.distribution(SamplingOptions(unknown="allow"), n=len(sonnet_vocab))
    assert len(everything.candidates) == len(sonnet_vocab)
    assert sum(c.probability for c in everything.candidates) == pytest.approx(1.0, abs=1e-5)
    assert everything.rest == pytest.approx(0.0, abs=1e-5)


def test_word_distribution_is_a_pure_function(sonnet_vocab):
    log_probs = torch.full((len(sonnet_vocab),), -math.log(len(sonnet_vocab)))
    result = word_distribution(log_probs, sonnet_vocab, SamplingOptions(unknown="allow"), n=3)
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


# ---- the candidates are what is sampled --------------------------------------------------------


def test_candidates_are_what_the_next_word_is_drawn_from(looping_model, counting_vocab):
    """The word rules read the prime and the words so far, in the chart as in the draw."""
    options = sampled(no_repeat_ngram=2, repetition_penalty=2.0, top_k=4, min_p=0.01, seed=3)
    stepper = StepGenerator(looping_model, counting_vocab, "one two three one")
    everything = len(counting_vocab)
    shown = stepper.distribution(options, n=everything)
    assert "two" not in {c.word for c in shown.candidates}  # "one two" is already in the text
    assert "two" in {c.word for c in stepper.distribution(sampled(top_k=4), n=everything).candidates}
    for _ in range(20):  # every sampled word is one the chart offered
        offered = {c.word for c in stepper.distribution(options, n=everything).candidates}
        assert stepper.step(options=options) in offered


def test_stages_end_with_the_candidates_distribution(sonnet_model, sonnet_vocab):
    options = sampled(temperature=0.7, top_k=5, top_p=0.9, repetition_penalty=1.5)
    stepper = StepGenerator(sonnet_model, sonnet_vocab, PRIME)
    stepper.step("thou")
    stages = stepper.stages(options)
    names = [name for name, _ in stages]
    assert names == ["model", "<unk>: skip", "repetition penalty 1.5", "temperature 0.7", "top-k 5", "top-p 0.9"]
    assert torch.equal(stages[0][1], stepper.log_probs)
    final = stages[-1][1].exp()  # (V,)
    shown = stepper.distribution(options, n=10)
    assert len(shown.candidates) == int((final > 0).sum())
    for candidate in shown.candidates:
        assert candidate.probability == pytest.approx(float(final[candidate.index]), abs=1e-7)


def test_last_word_is_the_word_read_last_and_the_state_before_it(sonnet_model, sonnet_vocab, monkeypatch):
    monkeypatch.setattr("lstm_core.sampling.step.UNDO_LIMIT", 2)
    stepper = StepGenerator(sonnet_model, sonnet_vocab, PRIME)
    prime_ids = sonnet_vocab.encode(PRIME.split())
    at_prime = stepper.last_word()
    assert at_prime.ids == prime_ids and at_prime.state is None and at_prime.index == prime_ids[-1]
    before = stepper.state
    stepper.step("summer's")
    read = stepper.last_word()
    assert read.ids == [sonnet_vocab.index("summer's")]
    assert torch.equal(read.state[0], before[0]) and torch.equal(read.state[1], before[1])
    read.state[1].add_(1.0)  # a copy: the generator's undo state is untouched
    stepper.undo()
    assert torch.equal(stepper.state[1], before[1])
    for word in ("thou", "art", "more"):
        stepper.step(word)
    stepper.undo()
    stepper.undo()  # the stack (2 steps) is spent; "thou" was read from a state no longer kept
    whole = stepper.last_word()
    assert whole.ids == [*prime_ids, sonnet_vocab.index("thou")] and whole.state is None


# ---- caps ----------------------------------------------------------------------------------------


def test_the_undo_stack_keeps_only_the_last_steps(looping_model, counting_vocab, monkeypatch):
    monkeypatch.setattr("lstm_core.sampling.step.UNDO_LIMIT", 3)
    stepper = StepGenerator(looping_model, counting_vocab, "one")
    for word in ("two", "three", "four", "five", "six"):
        stepper.step(word)
    for _ in range(3):
        stepper.undo()
    assert stepper.words == ["two", "three"] and not stepper.can_undo
    with pytest.raises(InputError, match="only the last 3 steps"):
        stepper.undo()
    stepper.reset()
    assert stepper.words == []


def test_a_step_past_the_length_cap_asks_to_undo_or_reset(looping_model, counting_vocab, monkeypatch):
    monkeypatch.setattr("lstm_core.sampling.step.MAX_LENGTH", 4)
    stepper = StepGenerator(looping_model, counting_vocab, "one")
    for _ in range(4):
        stepper.step()
    with pytest.raises(InputError, match="undo some words or reset"):
        stepper.step()
    with pytest.raises(InputError, match="limit of 4 words"):
        stepper.step("two")
    stepper.undo()
    stepper.step("two")
    assert len(stepper.words) == 4


def test_the_caps_are_the_shared_servers():
    assert MAX_LENGTH == 1000 and UNDO_LIMIT <= MAX_LENGTH
