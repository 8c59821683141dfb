import math

import pytest
import torch

from lstm_core.config import Config
from lstm_core.model.network import LSTMLanguageModel, choose_cutoffs, detach_state, keep_mask

VOCAB = 50


def make(output_layer="full", **changes):
    torch.manual_seed(0)
    config = Config(rnn_size=16, num_layers=2, output_layer=output_layer, **changes)
    cutoffs = [10, 30] if output_layer == "adaptive" else None
    return LSTMLanguageModel(VOCAB, config, cutoffs).eval()


@pytest.mark.parametrize("output_layer", ["full", "adaptive"])
def test_shapes_and_state(output_layer):
    model = make(output_layer)
    ids = torch.randint(0, VOCAB, (3, 7))
    hidden, (h, c) = model(ids)
    assert hidden.shape == (3, 7, 16)
    assert h.shape == c.shape == (2, 3, 16)
    assert model.log_probs(hidden).shape == (3, 7, VOCAB)
    assert model.token_nll(hidden, ids).shape == (3, 7)


@pytest.mark.parametrize("output_layer", ["full", "adaptive"])
def test_log_probs_are_a_proper_distribution_and_match_the_loss(output_layer):
    model = make(output_layer)
    ids = torch.randint(0, VOCAB, (2, 5))
    targets = torch.randint(0, VOCAB, (2, 5))
    with torch.no_grad():
        hidden, _ = model(ids)
        log_probs = model.log_probs(hidden)
        nll = model.token_nll(hidden, targets)
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(2, 5))
    picked = -log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(nll, picked, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        assert math.isclose(float(model.loss(hidden, targets)), float(nll.mean()), rel_tol=1e-6)


def test_state_carried_across_windows_equals_one_long_pass():
    model = make()
    ids = torch.randint(0, VOCAB, (2, 12))
    with torch.no_grad():
        whole, _ = model(ids)
        first, state = model(ids[:, :5])
        second, _ = model(ids[:, 5:], detach_state(state))
    torch.testing.assert_close(torch.cat([first, second], dim=1), whole)


def test_one_step_at_a_time_equals_a_window():
    model = make()
    ids = torch.randint(0, VOCAB, (1, 6))
    with torch.no_grad():
        whole, _ = model(ids)
        state, outputs = None, []
        for t in range(6):
            out, state = model(ids[:, t : t + 1], state)
            outputs.append(out)
    torch.testing.assert_close(torch.cat(outputs, dim=1), whole)


@pytest.mark.parametrize("output_layer", ["full", "adaptive"])
def test_tied_weights_share_one_matrix(output_layer):
    model = make(output_layer, tie_weights=True)
    output = model.decoder if output_layer == "full" else model.adaptive
    assert output.weight is model.embedding.weight
    untied = make(output_layer)
    assert untied.num_parameters() - model.num_parameters() == VOCAB * 16
    # Training moves the one shared matrix through both uses.
    ids = torch.randint(0, VOCAB, (2, 5))
    model.train()
    hidden, _ = model(ids)
    model.loss(hidden, ids).backward()
    assert model.embedding.weight.grad is not None and output.weight.grad is model.embedding.weight.grad


def test_adaptive_softmax_factorises_over_clusters():
    model = make("adaptive")
    hidden = torch.randn(6, 16)
    with torch.no_grad():
        log_probs = model.adaptive.log_probs(hidden)
        head = model.adaptive._head_log_probs(hidden, model.adaptive._clusters()[0])
    # The head's cluster tokens carry exactly the mass of their clusters' words.
    for cluster, (low, high) in enumerate([(10, 30), (30, VOCAB)]):
        torch.testing.assert_close(log_probs[:, low:high].exp().sum(1), head[:, 10 + cluster].exp())
    torch.testing.assert_close(log_probs[:, :10], head[:, :10])


def test_init_state_is_zero_on_the_parameters_device():
    h, c = make().init_state(4)
    assert h.shape == (2, 4, 16) and not h.any() and not c.any()
    assert h.device == make().device


def test_forget_gate_bias_starts_at_one():
    model = make()
    total = model.lstm.bias_ih_l0 + model.lstm.bias_hh_l0
    assert torch.all(total[16:32] == 1.0)
    assert torch.all(total[:16] == 0.0) and torch.all(total[32:] == 0.0)


def test_choose_cutoffs_follow_the_frequency_ranks():
    # 100 words with Zipf counts: the head holds the words making up 80% of the tokens.
    counts = [1000 // rank for rank in range(1, 101)]
    cutoffs = choose_cutoffs(counts)
    total = sum(counts)
    assert len(cutoffs) == 2 and 2 <= cutoffs[0] < cutoffs[1] < 99
    assert sum(counts[: cutoffs[0]]) / total >= 0.8 > sum(counts[: cutoffs[0] - 1]) / total
    assert sum(counts[: cutoffs[1]]) / total >= 0.95 > sum(counts[: cutoffs[1] - 1]) / total


def test_choose_cutoffs_for_tiny_vocabularies_still_builds_a_model():
    for size in (2, 3, 5):
        cutoffs = choose_cutoffs([5] * size)
        LSTMLanguageModel(size, Config(rnn_size=8, output_layer="adaptive"), cutoffs)


def test_bad_cutoffs_and_vocabularies_are_refused():
    with pytest.raises(ValueError, match="cutoffs must increase"):
        LSTMLanguageModel(20, Config(rnn_size=8, output_layer="adaptive"), [10, 5])
    with pytest.raises(ValueError, match="at least 2 words"):
        LSTMLanguageModel(1, Config(rnn_size=8))


def test_bf16_autocast_forward_gives_float32_log_probs():
    model = make("adaptive")
    ids = torch.randint(0, VOCAB, (2, 4))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        hidden, _ = model(ids)
        nll = model.token_nll(hidden, ids)
        log_probs = model.log_probs(hidden)
    assert nll.dtype == log_probs.dtype == torch.float32
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(2, 4))


@pytest.mark.parametrize("output_layer", ["full", "adaptive"])
def test_step_equals_a_one_word_forward(output_layer):
    model = make(output_layer)
    ids = torch.randint(0, VOCAB, (3, 4))
    with torch.no_grad():
        whole, (h, c) = model(ids)
        state = None
        for t in range(4):
            hidden, state = model.step(ids[:, t], state)
            torch.testing.assert_close(hidden, whole[:, t])
    torch.testing.assert_close(state[0], h)
    torch.testing.assert_close(state[1], c)


# ---- regularisation: embedding dropout, locked dropout, weight drop ----


def regularised(**changes):
    config = Config(rnn_size=16, num_layers=2, output_layer="adaptive", **changes)
    torch.manual_seed(0)
    return LSTMLanguageModel(VOCAB, config, [10, 30])


def test_the_regularisers_leave_an_eval_model_as_it_is():
    plain = regularised()
    model = regularised(dropout=0.3, embedding_dropout=0.3, locked_dropout=True, weight_drop=0.5)
    model.load_state_dict(plain.state_dict())
    ids = torch.randint(0, VOCAB, (3, 7))
    with torch.no_grad():
        expected, expected_state = plain.eval()(ids)
        hidden, state = model.eval()(ids)
        stepped, _ = model.step(ids[:, 0])
    torch.testing.assert_close(hidden, expected, rtol=0, atol=0)
    torch.testing.assert_close(state, expected_state, rtol=0, atol=0)
    torch.testing.assert_close(stepped, expected[:, 0])
    model.train()
    with torch.no_grad():
        assert not torch.equal(model(ids)[0], expected)


def test_features_are_the_outputs_before_and_after_the_output_dropout():
    model = regularised(dropout=0.5, locked_dropout=True)
    ids = torch.randint(0, VOCAB, (3, 7))
    with torch.no_grad():
        raw, hidden, state = model.eval().features(ids)
        expected, expected_state = model(ids)
        torch.testing.assert_close((raw, hidden, state), (expected, expected, expected_state), rtol=0, atol=0)
        raw, hidden, _ = model.train().features(ids)
    kept = hidden != 0
    torch.testing.assert_close(hidden[kept], raw[kept] / 0.5)  # the dropped output is the raw one, masked
    assert 0 < kept.float().mean() < 1


@pytest.mark.parametrize("locked", [False, True])
def test_input_dropout_is_on_the_lstm_inputs_and_dropout_on_its_outputs(locked):
    ids = torch.randint(0, VOCAB, (3, 7))
    seen = []
    for changes in ({"input_dropout": 0.5}, {"dropout": 0.5}):
        model = regularised(locked_dropout=locked, **changes).train()
        model.lstm.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach()))
        with torch.no_grad():
            raw, hidden, _ = model.features(ids)
        words = model.embedding(ids)
        inputs = seen.pop()
        if "input_dropout" in changes:
            kept = inputs != 0
            torch.testing.assert_close(inputs[kept], words[kept] / 0.5)
            assert 0.3 < kept.float().mean() < 0.7
            torch.testing.assert_close(hidden, raw, rtol=0, atol=0)  # no dropout on the outputs
        else:
            torch.testing.assert_close(inputs, words, rtol=0, atol=0)  # none on the inputs
            assert not torch.equal(hidden, raw)


def test_embedding_dropout_drops_a_word_everywhere_in_the_window():
    model = regularised(embedding_dropout=0.5).train()
    ids = torch.arange(20).repeat(3, 2)  # 20 words, each 6 times
    embedded = model._embed(ids)  # (3, 40, 16)
    vectors = model.embedding.weight.detach()
    dropped = set()
    for word in ids.unique().tolist():
        at = embedded[ids == word]  # every occurrence of the word, (n, 16)
        if torch.all(at == 0):
            dropped.add(word)
        else:
            torch.testing.assert_close(at, (vectors[word] / 0.5).expand_as(at))
    assert 0 < len(dropped) < 20  # about half (all or none: a chance of 2 in a million)


def test_locked_dropout_keeps_one_mask_for_a_streams_whole_window():
    model = regularised(dropout=0.5, locked_dropout=True).train()
    dropped = model._drop(torch.ones(4, 9, 16)) == 0  # (B, T, D)
    assert torch.equal(dropped, dropped[:, :1].expand_as(dropped))  # the same units at every step
    assert not torch.equal(dropped[0], dropped[1])  # each stream its own mask
    fresh = regularised(dropout=0.5).train()._drop(torch.ones(4, 9, 16)) == 0
    assert not torch.equal(fresh, fresh[:, :1].expand_as(fresh))  # ordinary dropout: a new mask per word


@pytest.mark.parametrize("p", [0.0, 0.3, 0.5])
def test_a_keep_mask_keeps_a_share_of_1_minus_p_scaled_by_its_inverse(p):
    like = torch.zeros(3, dtype=torch.bfloat16)
    torch.manual_seed(0)
    mask = keep_mask(like, (400, 500), p)
    assert mask.shape == (400, 500) and mask.dtype == torch.bfloat16
    kept = mask != 0
    assert torch.all(mask[kept] == torch.tensor(1 / (1 - p), dtype=torch.bfloat16))
    assert abs(kept.float().mean().item() - (1 - p)) < 0.005  # 200,000 draws: 4.5 standard deviations at p=0.5
    assert not torch.equal(keep_mask(like, (400, 500), p), mask) or p == 0  # a new draw each call


def test_weight_drop_is_the_lstm_with_masked_recurrent_weights():
    model = regularised(weight_drop=0.5).train()
    ids = torch.randint(0, VOCAB, (3, 7))
    torch.manual_seed(1)
    hidden, (h, c) = model(ids)
    torch.manual_seed(1)  # the same draws: one mask per layer, in layer order
    masked = [(w := getattr(model.lstm, f"weight_hh_l{layer}")) * keep_mask(w, w.shape, 0.5) for layer in range(2)]
    reference = regularised()
    reference.load_state_dict(model.state_dict())
    with torch.no_grad():
        for layer, weight in enumerate(masked):
            getattr(reference.lstm, f"weight_hh_l{layer}").copy_(weight)
        expected, (expected_h, expected_c) = reference.eval()(ids)
    torch.testing.assert_close(hidden, expected)
    torch.testing.assert_close((h, c), (expected_h, expected_c))
    hidden.sum().backward()  # a dropped connection learns nothing from this window
    gradient = model.lstm.weight_hh_l0.grad
    assert torch.equal(gradient == 0, masked[0] == 0)
