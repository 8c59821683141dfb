"""The fast path through generation: the same words as the processors, for every option combination.

``generate``, ``StepGenerator`` and beam search take the fast path with an
:class:`LSTMLanguageModel` in float32 (a cursor, and the processor list's
:class:`~lstm_core.sampling.shortcut.Shortcut` where it has one) and the protocol's way with any
other model. :class:`~tests.language_models.ProtocolOnly` shows the same model through the
protocol only, so the two ways can be compared: every combination of the pinned reference grid,
and each sampled one again with min-p, on the reference model (full softmax) and an adaptive one.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lstm_core.config import RECIPE_PRIME_TEXTS, Config
from lstm_core.evaluation.scoring import score
from lstm_core.model.checkpoint import load_checkpoint
from lstm_core.model.fast import fast_path
from lstm_core.model.network import LSTMLanguageModel
from lstm_core.sampling.decoding import generate
from lstm_core.sampling.history import History
from lstm_core.sampling.options import SamplingOptions
from lstm_core.sampling.processors import MinP, ProcessorList, RepetitionPenalty, Temperature, TopK, UnknownWordRule
from lstm_core.sampling.shortcut import Shortcut
from lstm_core.sampling.step import StepGenerator
from lstm_core.text.cleaning import tokenize
from lstm_core.text.vocab import UNK_INDEX
from tests import sampling_reference
from tests.conftest import SONNET
from tests.language_models import ProtocolOnly

DEMO = Path(__file__).resolve().parent.parent / "models" / "demo.pt"


def adaptive_reference_model() -> tuple[LSTMLanguageModel, object]:
    """The reference model's recipe with an adaptive softmax: peaked, and tail words often chosen."""
    _, vocab = sampling_reference.reference_model()
    torch.manual_seed(0)
    model = LSTMLanguageModel(len(vocab), Config(rnn_size=16, output_layer="adaptive"), [20, 50]).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(4.0)
        model.adaptive.cluster_bias.copy_(torch.tensor([3.0, 1.0]))
    return model, vocab


@pytest.fixture(scope="module", params=["full", "adaptive"])
def models(request):
    if request.param == "full":
        return sampling_reference.reference_model()
    return adaptive_reference_model()


def grid() -> list[dict]:
    """The reference grid, and each of its sampled combinations again with min-p."""
    cases = sampling_reference.grid()
    return cases + [{**case, "min_p": 0.1} for case in cases if case["method"] == "sample"]


def test_the_adaptive_model_writes_tail_words():
    model, vocab = adaptive_reference_model()
    words = generate(model, vocab, sampling_reference.PRIME, 40, SamplingOptions(method="sample", seed=0)).words
    assert any(vocab.index(word) >= model.cutoffs[0] for word in words)
    assert any(vocab.index(word) < model.cutoffs[0] for word in words)


@pytest.mark.parametrize("case", grid(), ids=lambda case: "-".join(map(str, case.values())))
def test_the_fast_path_writes_what_the_processors_write(models, case):
    model, vocab = models
    options = SamplingOptions(**case)
    fast = generate(model, vocab, sampling_reference.PRIME, sampling_reference.LENGTH, options)
    reference = generate(ProtocolOnly(model), vocab, sampling_reference.PRIME, sampling_reference.LENGTH, options)
    assert fast == reference


def test_the_fast_path_is_taken_for_the_lstm_model(monkeypatch, models):
    """With the class's own step and log_probs out of order, only the fast path can still write."""
    model, vocab = models

    def refuse(*args, **kwargs):
        raise AssertionError("the fast path calls neither step nor log_probs")

    monkeypatch.setattr(LSTMLanguageModel, "step", refuse)
    monkeypatch.setattr(LSTMLanguageModel, "log_probs", refuse)
    for options in (
        SamplingOptions(),
        SamplingOptions(method="sample", top_k=5, top_p=0.8, min_p=0.1, no_repeat_ngram=2, seed=1),
        SamplingOptions(method="sample", repetition_penalty=1.6, seed=1),  # the processors, on the cursor
        SamplingOptions(method="beam", beam_width=3),
    ):
        assert len(generate(model, vocab, sampling_reference.PRIME, 10, options).words) == 10
    stepper = StepGenerator(model, vocab, sampling_reference.PRIME)
    stepper.step(options=SamplingOptions(method="sample", seed=2))
    stepper.regenerate(5)
    assert len(score(model, vocab, SONNET).words) > 100


# ---- the shortcut of a processor list ------------------------------------------------------------


def test_a_shortcut_reads_its_settings_from_the_processor_list():
    options = SamplingOptions(method="sample", temperature=0.7, top_k=5, top_p=0.8, min_p=0.1, no_repeat_ngram=2)
    shortcut = Shortcut.of(ProcessorList.from_options(options), "sample")
    assert shortcut == Shortcut("sample", True, 2, 0.7, 5, 0.8, 0.1)
    greedy = SamplingOptions(temperature=0.7, top_k=5, unknown="stop")  # the filters are sampling's only
    assert Shortcut.of(ProcessorList.from_options(greedy), "greedy") == Shortcut("greedy")


def test_lists_a_cursor_cannot_follow_have_no_shortcut():
    assert Shortcut.of(ProcessorList.from_options(SamplingOptions(repetition_penalty=1.2)), "greedy") is None
    assert Shortcut.of(ProcessorList.from_options(SamplingOptions(method="beam")), "beam") is None
    out_of_order = ProcessorList([TopK(5), Temperature(0.5)])  # top-k of the raw, then temperature
    assert Shortcut.of(out_of_order, "sample") is None
    assert Shortcut.of(ProcessorList([Temperature(0.5), TopK(5), MinP(0.1)]), "sample") is not None
    assert Shortcut.of(ProcessorList([UnknownWordRule("skip"), RepetitionPenalty(2.0)]), "greedy") is None

    class Unheard(Temperature):  # a processor the shortcut does not know, even if it looks familiar
        pass

    assert Shortcut.of(ProcessorList([Unheard(0.5)]), "sample") is None


def test_an_ngram_ban_that_would_leave_no_word_is_lifted_as_the_processor_lifts_it(looping_model, counting_vocab):
    everything = range(len(counting_vocab))
    shortcut = Shortcut("greedy", skip_unknown=True, no_repeat_ngram=1)
    assert shortcut.banned(History(everything[1:]), len(counting_vocab)) == {UNK_INDEX}  # all seen: lifted
    assert shortcut.banned(History(everything[1:-1]), len(counting_vocab)) == set(everything[:-1])
    allowing = Shortcut("greedy", skip_unknown=False, no_repeat_ngram=1)
    assert allowing.banned(History(everything[1:]), len(counting_vocab)) == set(everything[1:])  # <unk> is left
    for options in (
        SamplingOptions(no_repeat_ngram=1),
        SamplingOptions(no_repeat_ngram=1, unknown="allow"),
        SamplingOptions(method="sample", no_repeat_ngram=1, top_k=3, seed=4),
    ):
        fast = generate(looping_model, counting_vocab, "one two", 20, options)  # more words than the vocabulary
        assert fast == generate(ProtocolOnly(looping_model), counting_vocab, "one two", 20, options)


# ---- step by step, on the demo model ---------------------------------------------------------------


@pytest.fixture(scope="module")
def demo() -> tuple[LSTMLanguageModel, object]:
    checkpoint = load_checkpoint(DEMO)
    return checkpoint.build_model(), checkpoint.vocab


DEMO_OPTIONS = [
    SamplingOptions(),
    SamplingOptions(method="sample", temperature=0.8, seed=3),
    SamplingOptions(method="sample", temperature=0.8, top_k=40, top_p=0.95, seed=4),
    SamplingOptions(method="sample", min_p=0.05, no_repeat_ngram=3, seed=5),
    SamplingOptions(method="sample", repetition_penalty=1.3, seed=6),
    SamplingOptions(repetition_penalty=1.3, unknown="stop"),
]


@pytest.mark.parametrize("options", DEMO_OPTIONS)
def test_step_by_step_is_one_shot_generation_on_the_demo_model(demo, options):
    model, vocab = demo
    prime = RECIPE_PRIME_TEXTS[0]
    one_shot = generate(model, vocab, prime, 40, options)
    stepper = StepGenerator(model, vocab, prime)
    for _ in range(len(one_shot.words)):
        stepper.step(options=options)
    assert stepper.words == one_shot.words
    assert stepper.regenerate(40, options) == one_shot
    assert generate(ProtocolOnly(model), vocab, prime, 40, options) == one_shot


def test_the_steps_probabilities_are_the_models(demo):
    """What a UI shows (log-probs, the stages' last distribution) equals the protocol path's to float tolerance."""
    model, vocab = demo
    prime = RECIPE_PRIME_TEXTS[0]
    fast, reference = StepGenerator(model, vocab, prime), StepGenerator(ProtocolOnly(model), vocab, prime)
    options = SamplingOptions(method="sample", temperature=0.8, top_k=40, top_p=0.95, min_p=0.02, seed=7)
    for word in tokenize("and thou art more lovely than the summer of my heart")[:10]:
        torch.testing.assert_close(fast.log_probs, reference.log_probs, rtol=0, atol=2e-5)
        final, expected = fast.stages(options)[-1][1], reference.stages(options)[-1][1]
        torch.testing.assert_close(final.exp(), expected.exp(), rtol=0, atol=1e-5)
        fast.step(word)
        reference.step(word)
    torch.testing.assert_close(fast.state[1], reference.state[1], rtol=1e-5, atol=1e-5)


def test_a_model_in_half_precision_takes_the_protocols_way(demo):
    model, vocab = demo
    half = load_checkpoint(DEMO).build_model().bfloat16()
    assert fast_path(model) is not None and fast_path(half) is None
    options = SamplingOptions(method="sample", top_k=40, seed=1)
    result = generate(half, vocab, RECIPE_PRIME_TEXTS[0], 20, options)
    assert result == generate(ProtocolOnly(half), vocab, RECIPE_PRIME_TEXTS[0], 20, options)
    stepper = StepGenerator(half, vocab, RECIPE_PRIME_TEXTS[0])
    assert stepper.step(options=options) == result.words[0]
    assert score(half, vocab, SONNET).mean_nll == pytest.approx(score(model, vocab, SONNET).mean_nll, rel=0.02)
