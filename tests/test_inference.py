"""The fast inference path gives the model's own probabilities, choices, draws and scores.

Small random models (1 and 2 layers, full and adaptive softmax, tied and untied, with and without
the input table; LSTMs, GRUs and plain RNNs) and the shipped demo model; every comparison is against the model's own
``step`` / ``log_probs`` or the samplers' processors and pure functions in :mod:`lstm_core.sampling`.
"""

from __future__ import annotations

import gc
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from lstm_core.config import RECIPE_PRIME_TEXTS, Config
from lstm_core.model import fast as inference
from lstm_core.model.checkpoint import load_checkpoint
from lstm_core.model.fast import FastLM, fast_lm, fast_path
from lstm_core.model.network import LSTMLanguageModel
from lstm_core.sampling.decoding import generate, sample_index
from lstm_core.sampling.fast_choice import best_next, cut_min_p, nucleus_ids, sample_next, sample_top_k, top_k_ids
from lstm_core.sampling.history import History
from lstm_core.sampling.options import SamplingOptions
from lstm_core.sampling.processors import ProcessorList, filter_min_p, filter_top_k, filter_top_p
from lstm_core.text.cleaning import tokenize
from lstm_core.text.vocab import UNK_INDEX
from tests.conftest import SONNET

DEMO = Path(__file__).resolve().parent.parent / "models" / "demo.pt"
VOCAB = 300
CUTOFFS = [40, 150]

MODELS = {
    "1 layer, full, untied": {"num_layers": 1, "output_layer": "full"},
    "1 layer, adaptive, tied": {"num_layers": 1, "output_layer": "adaptive", "tie_weights": True},
    "2 layers, adaptive, untied, embedding 16": {"num_layers": 2, "output_layer": "adaptive", "embedding_size": 16},
    "2 layers, full, tied": {"num_layers": 2, "output_layer": "full", "tie_weights": True},
    "GRU, 1 layer, adaptive, tied": {"num_layers": 1, "output_layer": "adaptive", "tie_weights": True, "cell": "gru"},
    "GRU, 2 layers, full, embedding 16": {"num_layers": 2, "output_layer": "full", "embedding_size": 16, "cell": "gru"},
    "RNN, 1 layer, full, untied": {"num_layers": 1, "output_layer": "full", "cell": "rnn"},
    "RNN, 2 layers, adaptive, tied": {"num_layers": 2, "output_layer": "adaptive", "tie_weights": True, "cell": "rnn"},
}


def make_model(num_layers: int, output_layer: str, seed: int = 0, **changes) -> LSTMLanguageModel:
    """A random model whose distributions are peaked enough that head and tail words both win."""
    torch.manual_seed(seed)
    config = Config(rnn_size=24, num_layers=num_layers, output_layer=output_layer, **changes)
    model = LSTMLanguageModel(VOCAB, config, CUTOFFS if output_layer == "adaptive" else None).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(4.0)
        if model.cell == "rnn":
            # Four times PyTorch's recurrent weights make a plain RNN chaotic: two ways of rounding
            # the same sums then part by more each word, whichever is right. Twice keeps it stable.
            for layer in range(num_layers):
                getattr(model.rnn, f"weight_hh_l{layer}").mul_(0.5)
        if output_layer == "adaptive":
            # The first cluster's token often beats the best head word (and a word inside it then
            # wins about one time in four); the second's less often.
            model.adaptive.cluster_bias.copy_(torch.tensor([4.0, 1.0]))
            # A few tail words that dominate their cluster: a cluster's best word is then almost as
            # likely as its token, so skipping a tail is decided by a thin margin.
            model.adaptive.bias[[45, 160]] += 12.0
    return model


@pytest.fixture(scope="module")
def demo() -> tuple[LSTMLanguageModel, object]:
    checkpoint = load_checkpoint(DEMO)
    return checkpoint.build_model(), checkpoint.vocab


@pytest.fixture(params=[*MODELS, "demo"])
def model(request, demo) -> LSTMLanguageModel:
    return demo[0] if request.param == "demo" else make_model(**MODELS[request.param])


def random_state(model: LSTMLanguageModel, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A state ``(h, c)``, each ``(L, 1, H)``, anywhere the model could be (``c`` zeros for a GRU or an RNN)."""
    shape = (model.num_layers, 1, model.rnn_size)
    cell = torch.randn(shape, generator=generator) * 2
    return torch.rand(shape, generator=generator) * 2 - 1, cell if model.cell == "lstm" else torch.zeros(shape)


def samplers_filter(
    log_probs: torch.Tensor, temperature: float, top_k: int, top_p: float, min_p: float = 0.0
) -> torch.Tensor:
    """``log_probs (V,)`` after the samplers' temperature, top-k, top-p and min-p processors, in their order."""
    options = SamplingOptions(
        method="sample", temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p, unknown="allow"
    )
    return ProcessorList.from_options(options)(log_probs.unsqueeze(0), [History()])[0]


def reference_log_probs(model: LSTMLanguageModel, state: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return model.log_probs(state[0][-1])[0]


# ---- the model's contract --------------------------------------------------------------------


@pytest.mark.parametrize("input_table", [False, True])
def test_steps_give_the_models_log_probs_and_states_over_50_words(model, input_table):
    lm = FastLM(model, input_table=input_table)
    assert (lm.input_table is not None) == input_table
    ids = torch.randint(0, model.vocab_size, (50,), generator=torch.Generator().manual_seed(1))
    cursor = lm.cursor()
    state = fast_state = None
    with torch.no_grad():
        for word in ids.tolist():
            hidden, state = model.step(torch.tensor([word]), state)
            expected = model.log_probs(hidden)[0]
            cursor.feed(word)
            torch.testing.assert_close(cursor.log_probs(), expected, rtol=0, atol=2e-5)
            fast_hidden, fast_state = lm.step(torch.tensor([word]), fast_state)
            torch.testing.assert_close(lm.log_probs(fast_hidden)[0], expected, rtol=0, atol=2e-5)
    for mine in (cursor.state(), fast_state):
        torch.testing.assert_close(mine[0], state[0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(mine[1], state[1], rtol=1e-5, atol=1e-5)


def test_batched_steps_match_the_model_row_by_row():
    model = make_model(**MODELS["2 layers, adaptive, untied, embedding 16"])
    lm = FastLM(model)
    generator = torch.Generator().manual_seed(2)
    state = (torch.rand(2, 3, 24, generator=generator) - 0.5, torch.randn(2, 3, 24, generator=generator))
    ids = torch.tensor([5, 120, 299])
    with torch.no_grad():
        hidden, expected_state = model.step(ids, state)
        expected = model.log_probs(hidden)
    fast_hidden, fast_state = lm.step(ids, state)
    torch.testing.assert_close(lm.log_probs(fast_hidden), expected, rtol=0, atol=2e-5)
    torch.testing.assert_close(fast_state[1], expected_state[1], rtol=1e-5, atol=1e-5)


def test_a_cursor_starts_from_the_state_it_is_given(model):
    state = random_state(model, torch.Generator().manual_seed(3))
    cursor = FastLM(model).cursor(state)
    assert all(torch.equal(mine, given) for mine, given in zip(cursor.state(), state, strict=True))
    torch.testing.assert_close(cursor.log_probs(), reference_log_probs(model, state), rtol=0, atol=2e-5)


# ---- greedy ------------------------------------------------------------------------------------


def test_best_next_is_the_argmax_of_the_full_distribution(model):
    lm = FastLM(model)
    generator = torch.Generator().manual_seed(4)
    winners_in_tails = winners_in_head = 0
    for trial in range(60):
        state = random_state(model, generator)
        banned_sets = [(), (UNK_INDEX,), tuple(torch.randint(0, model.vocab_size, (20,), generator=generator).tolist())]
        for banned in banned_sets:
            cursor = lm.cursor(state)
            choice = best_next(cursor, banned)
            full = cursor.log_probs().clone()
            full[list(banned)] = float("-inf")
            assert choice == int(full.argmax()), (trial, banned)
            expected = reference_log_probs(model, state).clone()
            expected[list(banned)] = float("-inf")
            assert float(expected[choice]) == pytest.approx(float(expected.max()), abs=2e-5)
            in_tail = choice >= (model.cutoffs or [model.vocab_size])[0]
            winners_in_tails += in_tail
            winners_in_head += not in_tail
    assert winners_in_head
    if model.output_layer == "adaptive" and model.vocab_size == VOCAB:  # both ways of winning were tried
        assert winners_in_tails


def test_best_next_with_every_word_banned_is_word_0_like_argmax():
    model = make_model(**MODELS["1 layer, adaptive, tied"])
    assert best_next(FastLM(model).cursor(), range(VOCAB)) == 0


def test_banned_ids_outside_the_vocabulary_are_refused():
    cursor = FastLM(make_model(**MODELS["1 layer, full, untied"])).cursor()
    with pytest.raises(ValueError, match="outside the vocabulary"):
        best_next(cursor, [VOCAB])


# ---- sampling ----------------------------------------------------------------------------------

FILTERS = [
    (1.0, 0, 1.0, 0.0),
    (0.8, 0, 1.0, 0.0),
    (0.8, 10, 0.95, 0.0),
    (1.3, 0, 0.9, 0.0),
    (0.5, 5, 1.0, 0.0),
    (0.7, 60, 0.8, 0.0),  # k beyond the head of the small adaptive models: every tail counts
    (1e-5, 0, 1.0, 0.0),  # greedy by temperature: one draw is still used
    (1.0, 0, 1.0, 0.05),  # min-p alone, after top-p, after top-k and top-p
    (1.4, 0, 0.9, 0.2),
    (0.9, 20, 0.95, 0.1),
]


@pytest.mark.parametrize(("temperature", "top_k", "top_p", "min_p"), FILTERS)
def test_sample_next_draws_what_the_samplers_draw(model, temperature, top_k, top_p, min_p):
    lm = FastLM(model)
    generator = torch.Generator().manual_seed(5)
    for trial in range(12):
        state = random_state(model, generator)
        cursor = lm.cursor(state)
        # The samplers' path with unknown='skip': remove <unk>, renormalise, filter, draw.
        scores = cursor.log_probs().clone()
        scores[UNK_INDEX] = float("-inf")
        filtered = samplers_filter(scores.log_softmax(-1), temperature, top_k, top_p, min_p)
        theirs, ours = torch.Generator().manual_seed(trial), torch.Generator().manual_seed(trial)
        for _ in range(4):  # several draws from one stream: each call takes exactly one
            fresh = lm.cursor(state)  # nothing computed yet at this position
            drawn = sample_next(fresh, ours, temperature, top_k, top_p, (UNK_INDEX,), min_p)
            assert drawn == sample_index(filtered, theirs)
        assert torch.equal(torch.rand(1, generator=ours), torch.rand(1, generator=theirs))  # in step


def test_min_p_leaves_out_words_in_sampling():
    """The min-p cases above draw only where min-p removed words (or the test would not show it works)."""
    model = make_model(**MODELS["1 layer, adaptive, tied"])
    cursor = FastLM(model).cursor(random_state(model, torch.Generator().manual_seed(3)))
    scores = cursor.log_probs().clone()
    kept = torch.isfinite(samplers_filter(scores, 1.0, 0, 1.0, 0.05)).sum()
    assert 1 < int(kept) < model.vocab_size // 2


def test_sample_next_refuses_bad_options():
    cursor = FastLM(make_model(**MODELS["1 layer, full, untied"])).cursor()
    generator = torch.Generator().manual_seed(0)
    for options in ({"temperature": 0.0}, {"top_k": -1}, {"top_p": 0.0}, {"top_p": 1.5}, {"min_p": 1.5}):
        with pytest.raises(ValueError):
            sample_next(cursor, generator, **options)


def tie_heavy_log_probs(generator: torch.Generator, size: int, levels: int) -> torch.Tensor:
    """Normalised log-probs ``(size,)`` with only ``levels`` distinct values: ties everywhere."""
    return (torch.randint(0, levels, (size,), generator=generator).float() * 0.7).log_softmax(0)


@pytest.mark.parametrize("levels", [3, 40, 10_000])
def test_top_k_ids_keep_what_filter_top_k_keeps(levels):
    generator = torch.Generator().manual_seed(6)
    for _ in range(30):
        scores = tie_heavy_log_probs(generator, 500, levels)
        for k in (1, 7, 64, 499):
            expected = torch.nonzero(torch.isfinite(filter_top_k(scores, k))).view(-1)
            assert torch.equal(top_k_ids(scores, k), expected)


@pytest.mark.parametrize(("size", "levels"), [(500, 3), (500, 10_000), (3000, 10_000), (3000, 2)])
def test_nucleus_ids_keep_what_filter_top_p_keeps(size, levels):
    generator = torch.Generator().manual_seed(7)
    for _ in range(20):
        scores = tie_heavy_log_probs(generator, size, levels)
        scores[torch.randint(0, size, (5,), generator=generator)] = float("-inf")
        scores = scores.log_softmax(0)
        for top_p in (0.1, 0.5, 0.9, 0.99):
            expected = torch.nonzero(torch.isfinite(filter_top_p(scores, top_p))).view(-1)
            assert torch.equal(nucleus_ids(scores, top_p), expected)


@pytest.mark.parametrize("levels", [4, 10_000])
def test_sample_top_k_draws_what_the_samplers_draw(levels):
    generator = torch.Generator().manual_seed(8)
    settings = [(1.0, 40, 1.0, 0.0), (0.8, 40, 0.95, 0.0), (1.5, 3, 0.5, 0.0), (0.6, 400, 0.9, 0.0)]
    settings += [(1.0, 40, 1.0, 0.3), (0.8, 40, 0.95, 0.5), (2.0, 400, 1.0, 0.5)]  # min-p
    for trial in range(40):
        scores = tie_heavy_log_probs(generator, 400, levels)
        for temperature, top_k, top_p, min_p in settings:
            filtered = samplers_filter(scores, temperature, top_k, top_p, min_p)
            theirs, ours = torch.Generator().manual_seed(trial), torch.Generator().manual_seed(trial)
            for _ in range(3):
                drawn = sample_top_k(scores, top_k, ours, temperature, top_p, min_p)
                assert drawn == sample_index(filtered, theirs)


@pytest.mark.parametrize("levels", [3, 10_000])
def test_cut_min_p_keeps_what_filter_min_p_keeps(levels):
    generator = torch.Generator().manual_seed(16)
    for _ in range(30):
        scores = tie_heavy_log_probs(generator, 500, levels)
        for min_p in (0.0, 0.01, 0.3, 0.5, 1.0):
            expected = torch.isfinite(filter_min_p(scores, min_p))
            assert torch.equal(torch.isfinite(cut_min_p(scores.clone(), min_p)), expected)


# ---- scoring -----------------------------------------------------------------------------------


def assert_ranks_fit(ranks: torch.Tensor, log_probs: torch.Tensor, targets: torch.Tensor, tolerance: float) -> None:
    """Each rank is 1 + the words above the target in ``log_probs (N, V)``, up to words within ``tolerance``."""
    target = log_probs.gather(1, targets.unsqueeze(1))
    fewest = (log_probs > target + tolerance).sum(dim=1) + 1
    most = (log_probs > target - tolerance).sum(dim=1)  # counts the target itself in place of the 1
    assert bool(((fewest <= ranks) & (ranks <= most)).all())


def test_score_ids_give_each_words_log_prob_and_rank_in_blocks_or_not(model, monkeypatch):
    ids = torch.randint(0, model.vocab_size, (150,), generator=torch.Generator().manual_seed(9))
    lm = FastLM(model)
    log_probs, ranks = lm.score_ids(ids)
    with torch.no_grad():
        full = model.log_probs(model(ids[None, :-1])[0][0])  # (N - 1, V)
    torch.testing.assert_close(log_probs, full.gather(1, ids[1:, None])[:, 0], rtol=0, atol=2e-5)
    assert ranks.dtype == torch.int64
    assert_ranks_fit(ranks, full, ids[1:], 2e-5)
    assert max(ranks.tolist()) > 50  # random words: most are far down the list
    monkeypatch.setattr(inference, "_SCORE_BLOCK", 16)
    monkeypatch.setattr(inference, "_TAIL_ROWS", 5)
    blocked = lm.score_ids(ids)
    torch.testing.assert_close(blocked[0], log_probs, rtol=0, atol=1e-5)
    assert_ranks_fit(blocked[1], full, ids[1:], 2e-5)


def test_score_ids_of_the_demo_model_on_a_sonnet(demo):
    model, vocab = demo
    ids = torch.tensor(vocab.encode(tokenize(SONNET)))
    log_probs, ranks = FastLM(model).score_ids(ids)
    with torch.no_grad():
        full = model.log_probs(model(ids[None, :-1])[0][0])
    torch.testing.assert_close(log_probs, full.gather(1, ids[1:, None])[:, 0], rtol=0, atol=2e-5)
    assert_ranks_fit(ranks, full, ids[1:], 2e-5)
    assert (ids[1:] >= model.cutoffs[0]).any()  # tail words are scored too


def test_score_ids_need_two_words():
    with pytest.raises(ValueError, match="at least two words"):
        FastLM(make_model(**MODELS["1 layer, full, untied"])).score_ids(torch.tensor([3]))


# ---- with the samplers' loops --------------------------------------------------------------------


def continuation(lm: FastLM, vocab, prime: str, length: int, options: SamplingOptions) -> list[str]:
    """What the samplers' ``_sample_continuation`` does, through a cursor."""
    cursor = lm.cursor()
    for word in vocab.encode(tokenize(prime)):
        cursor.feed(word)
    generator = torch.Generator().manual_seed(options.seed or 0)
    out: list[int] = []
    for position in range(length):
        if options.method == "greedy":
            word = best_next(cursor, (UNK_INDEX,))
        else:
            word = sample_next(cursor, generator, options.temperature, options.top_k, options.top_p, (UNK_INDEX,))
        out.append(word)
        if position + 1 < length:
            cursor.feed(word)
    return vocab.decode(out)


@pytest.mark.parametrize(
    "options",
    [
        SamplingOptions(),
        SamplingOptions(method="sample", temperature=0.8, seed=3),
        SamplingOptions(method="sample", temperature=0.8, top_k=40, top_p=0.95, seed=4),
        SamplingOptions(method="sample", temperature=1.0, top_p=0.9, seed=5),
    ],
)
def test_the_demo_model_writes_the_same_words_as_generate(demo, options):
    model, vocab = demo
    lm = fast_lm(model)
    for prime in RECIPE_PRIME_TEXTS:
        assert continuation(lm, vocab, prime, 30, options) == generate(model, vocab, prime, 30, options).words


def test_one_fast_lm_serves_several_threads_at_once(demo):
    model, vocab = demo
    lm = fast_lm(model)
    options = SamplingOptions(method="sample", temperature=0.9, top_k=40, seed=6)
    primes = [*RECIPE_PRIME_TEXTS, "my lord", "good night sweet prince"]
    alone = [continuation(lm, vocab, prime, 40, options) for prime in primes]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda prime: continuation(lm, vocab, prime, 40, options), primes))
    assert together == alone


# ---- building and caching ------------------------------------------------------------------------


def test_the_input_table_is_built_for_small_models_only_unless_asked(demo):
    small = make_model(**MODELS["1 layer, adaptive, tied"])
    assert FastLM(small).input_table_bytes == VOCAB * 4 * 24 * 4
    model, _ = demo
    assert FastLM(model).input_table_bytes == 0  # 29 MB: over the budget
    assert FastLM(model, input_table=True).input_table_bytes == model.vocab_size * 4 * model.rnn_size * 4


def test_what_a_fast_lm_and_a_cursor_hold_besides_the_model(demo):
    model, _ = demo
    lm = FastLM(model)
    hidden, embedding, head = model.rnn_size, model.embedding.embedding_dim, model.cutoffs[0] + len(model.cutoffs)
    gates, head_rows = 4 * hidden * (embedding + hidden + 1), head * (hidden + 1)
    assert lm.nbytes == 4 * (gates + head_rows)
    assert 2.6e6 < lm.nbytes < 2.8e6  # the figure the docstrings and bench/RESULTS.md give
    # The embedding and the tails are the model's own weights, not copies.
    assert lm.embedding.data_ptr() == model.embedding.weight.data_ptr()
    assert lm.output_weight.data_ptr() == model.adaptive.weight.data_ptr()
    assert 0.2e6 < lm.cursor().nbytes < 0.25e6
    full = make_model(**MODELS["2 layers, full, tied"])
    assert FastLM(full, input_table=False).nbytes == 4 * sum(4 * 24 * (24 + 24 + 1) for _ in range(2))


def test_the_fast_path_is_for_the_lstm_model_itself_in_float32(monkeypatch):
    model = make_model(**MODELS["1 layer, adaptive, tied"])
    assert fast_path(model) is fast_lm(model)
    assert fast_path(make_model(**MODELS["1 layer, adaptive, tied"]).bfloat16()) is None
    assert fast_path(make_model(**MODELS["1 layer, adaptive, tied"]).half()) is None
    assert fast_path(make_model(**MODELS["1 layer, adaptive, tied"]).to("meta")) is None  # not on the CPU

    class Variant(LSTMLanguageModel):
        pass

    assert fast_path(Variant(VOCAB, Config(rnn_size=24))) is None
    monkeypatch.setattr(model, "log_probs", lambda hidden: hidden)  # replaced on the instance
    assert fast_path(model) is None
    monkeypatch.undo()
    assert fast_path(model) is not None


def test_fast_lm_is_cached_and_rebuilt_when_the_weights_change():
    model = make_model(**MODELS["2 layers, adaptive, untied, embedding 16"])
    first = fast_lm(model)
    assert fast_lm(model) is first
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    model.train()
    hidden, _ = model(torch.randint(0, VOCAB, (2, 6)))
    model.loss(hidden, torch.randint(0, VOCAB, (2, 6))).backward()
    optimizer.step()
    model.eval()
    second = fast_lm(model)
    assert second is not first
    state = random_state(model, torch.Generator().manual_seed(10))
    torch.testing.assert_close(second.cursor(state).log_probs(), reference_log_probs(model, state), rtol=0, atol=2e-5)
    model.load_state_dict(make_model(**MODELS["2 layers, adaptive, untied, embedding 16"], seed=1).state_dict())
    assert fast_lm(model) is not second


def test_fast_lm_ignores_the_models_training_mode():
    model = make_model(**MODELS["2 layers, full, tied"], dropout=0.5)
    state = random_state(model, torch.Generator().manual_seed(11))
    expected = reference_log_probs(model, state)
    with torch.no_grad():
        hidden, _ = model.step(torch.tensor([7]), state)
        expected_next = model.log_probs(hidden)[0]
    model.train()
    lm = fast_lm(model)
    cursor = lm.cursor(state)
    torch.testing.assert_close(cursor.log_probs(), expected, rtol=0, atol=2e-5)
    cursor.feed(7)
    torch.testing.assert_close(cursor.log_probs(), expected_next, rtol=0, atol=2e-5)
    ids = torch.randint(0, VOCAB, (20,), generator=torch.Generator().manual_seed(12))
    assert torch.equal(lm.score_ids(ids)[0], lm.score_ids(ids)[0])  # no dropout in scoring either


def test_the_cache_lets_the_model_go():
    model = make_model(**MODELS["1 layer, full, untied"])
    fast_lm(model)
    alive = weakref.ref(model)
    gc.collect()  # models of earlier tests that only wait for the collector go first
    count = len(inference._CACHE)
    del model
    gc.collect()
    assert alive() is None
    assert len(inference._CACHE) == count - 1


def test_a_model_in_another_precision_is_refused():
    with pytest.raises(ValueError, match="float32"):
        FastLM(make_model(**MODELS["1 layer, full, untied"]).bfloat16())


def test_a_cursor_refuses_a_state_of_the_wrong_shape():
    lm = FastLM(make_model(**MODELS["2 layers, full, tied"]))
    with pytest.raises(ValueError, match="each"):
        lm.cursor((torch.zeros(1, 1, 24), torch.zeros(1, 1, 24)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
def test_on_a_gpu_the_fast_path_gives_the_cpu_results(demo):
    model, vocab = demo
    gpu = load_checkpoint(DEMO).build_model("cuda")
    cpu_lm, gpu_lm = FastLM(model), FastLM(gpu, input_table=True)
    ids = torch.tensor(vocab.encode(tokenize(SONNET)))
    cpu_cursor, gpu_cursor = cpu_lm.cursor(), gpu_lm.cursor()
    for word in ids[:20].tolist():
        cpu_cursor.feed(word)
        gpu_cursor.feed(word)
        torch.testing.assert_close(gpu_cursor.log_probs().cpu(), cpu_cursor.log_probs(), rtol=0, atol=1e-4)
        assert best_next(gpu_cursor, (UNK_INDEX,)) == best_next(cpu_cursor, (UNK_INDEX,))
    cpu_scores, gpu_scores = cpu_lm.score_ids(ids), gpu_lm.score_ids(ids.cuda())
    torch.testing.assert_close(gpu_scores[0].cpu(), cpu_scores[0], rtol=0, atol=1e-4)
    assert (gpu_scores[1].cpu() - cpu_scores[1]).abs().max() <= 1  # ranks differ at most at near-ties


# ---- thin margins: a tail skipped or computed by a hair ------------------------------------------


def margin_model(hidden: torch.Tensor, bar_word: int, margin: float) -> tuple[LSTMLanguageModel, float]:
    """The adaptive test model with its first cluster's token set ``margin`` above ``bar_word``.

    Both tokens start well below the head's words; then the first one's bias is set so that, at
    ``hidden (H,)``, its head log-prob is ``bar_word``'s plus ``margin`` (a shared normaliser, so
    the logits' difference is the log-probs'). Returns the model and the within-cluster log-prob
    of the cluster's dominant word 45, so a test can place the margin around it.
    """
    model = make_model(**MODELS["1 layer, adaptive, tied"])
    softmax = model.adaptive
    with torch.no_grad():
        softmax.cluster_bias.fill_(-50.0)
        bar_logit = float(softmax.weight[bar_word] @ hidden + softmax.bias[bar_word])
        softmax.cluster_bias[0] = bar_logit + margin - float(softmax.cluster_weight[0] @ hidden)
        start, end = softmax.bounds[1], softmax.bounds[2]
        within = torch.log_softmax(softmax.weight[start:end] @ hidden + softmax.bias[start:end], 0)
    return model, float(within[45 - start])


def margins_around(within: float) -> list[float]:
    """Margins that put word 45 just above the bar; the token above but word 45 below; the token below."""
    assert 1e-4 < -within < 0.01  # word 45 has nearly all of its cluster's mass, not quite all
    return [-1.5 * within, -0.5 * within, 0.5 * within]


def head_order(model: LSTMLanguageModel, hidden: torch.Tensor) -> list[int]:
    head = model.adaptive.weight[: model.cutoffs[0]] @ hidden + model.adaptive.bias[: model.cutoffs[0]]
    return [word for word in torch.argsort(head, descending=True, stable=True).tolist() if word != UNK_INDEX]


def test_best_next_finds_a_tail_word_that_wins_by_a_hair():
    state = random_state(make_model(**MODELS["1 layer, adaptive, tied"]), torch.Generator().manual_seed(13))
    hidden = state[0][-1, 0]
    best_head_word = head_order(make_model(**MODELS["1 layer, adaptive, tied"]), hidden)[0]
    _, within = margin_model(hidden, best_head_word, 0.0)
    winners = []
    for margin in margins_around(within):
        model, _ = margin_model(hidden, best_head_word, margin)
        expected = reference_log_probs(model, state).clone()
        expected[UNK_INDEX] = float("-inf")
        winners.append(best_next(FastLM(model).cursor(state), (UNK_INDEX,)))
        assert winners[-1] == int(expected.argmax())
    assert winners == [45, best_head_word, best_head_word]


def test_top_k_sampling_takes_a_tail_word_that_enters_the_top_k_by_a_hair():
    top_k = 8
    state = random_state(make_model(**MODELS["1 layer, adaptive, tied"]), torch.Generator().manual_seed(14))
    hidden = state[0][-1, 0]
    kth_head_word = head_order(make_model(**MODELS["1 layer, adaptive, tied"]), hidden)[top_k - 1]
    _, within = margin_model(hidden, kth_head_word, 0.0)
    for margin in margins_around(within):
        model, _ = margin_model(hidden, kth_head_word, margin)
        scores = reference_log_probs(model, state).clone()
        scores[UNK_INDEX] = float("-inf")
        filtered = samplers_filter(scores.log_softmax(-1), 1.0, top_k, 1.0)
        assert bool(torch.isfinite(filtered[45])) == (margin > -within)
        lm = FastLM(model)
        theirs, ours = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
        for _ in range(30):
            assert sample_next(lm.cursor(state), ours, 1.0, top_k, 1.0, (UNK_INDEX,)) == sample_index(filtered, theirs)


def test_a_rank_counts_a_tail_word_above_the_target_by_a_hair():
    state = random_state(make_model(**MODELS["1 layer, adaptive, tied"]), torch.Generator().manual_seed(15))
    hidden = state[0][-1, 0]
    target = head_order(make_model(**MODELS["1 layer, adaptive, tied"]), hidden)[3]  # the 4th best head word
    _, within = margin_model(hidden, target, 0.0)
    for margin in margins_around(within):
        model, _ = margin_model(hidden, target, margin)
        full = reference_log_probs(model, state).unsqueeze(0)
        log_prob, rank = FastLM(model).score_hidden(hidden.unsqueeze(0), torch.tensor([target]))
        torch.testing.assert_close(log_prob, full[:, target], rtol=0, atol=2e-5)
        assert int(rank) == 4 + (margin > -within)  # word 45 above it or not (no other tail word is)
        assert_ranks_fit(rank, full, torch.tensor([target]), 2e-5)


def test_the_nucleus_of_512_even_words_just_past_top_p_is_found_and_not_searched_for_ever():
    # 511 of them hold less than top_p, all 512 a little more: the search by 64, then 512 words
    # must go on to all of them once 512 were not enough, not try 512 again.
    even = 0.9 / 512 * 1.0001
    probs = torch.tensor([even] * 512 + [(1 - 512 * even) / 488] * 488, dtype=torch.float64)
    ids = nucleus_ids(probs.log().float(), 0.9)
    assert torch.equal(ids, torch.arange(512))
