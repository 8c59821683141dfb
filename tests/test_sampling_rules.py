"""Each sampling rule has one home, and both ways of choosing a word follow it to the same words.

The plain path (the processors: ``filter_top_p``, ``TopP``, then ``sample_index``) and the fast path
(``nucleus_ids`` and the draw at a cursor) are fed distributions whose nucleus holds exactly 1,
63, 64, 65, 511, 512, 513 or every word, around the sizes at which the nucleus search widens (64,
then 512, then all), and ones whose nucleus ends inside a run of tied words. Every call that could
search for ever runs under a hang guard, a thread or a process given a generous time limit that
fails the test when it has not returned: never a timing assertion.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
import torch

from lstm_core.config import Config
from lstm_core.model.checkpoint import Checkpoint, save_checkpoint
from lstm_core.model.fast import FastLM
from lstm_core.model.network import LSTMLanguageModel
from lstm_core.sampling import rules
from lstm_core.sampling.decoding import sample_index
from lstm_core.sampling.fast_choice import nucleus_ids, sample_next
from lstm_core.sampling.history import History
from lstm_core.sampling.processors import MinP, Temperature, TopK, TopP, filter_top_p
from lstm_core.text.vocab import UNK_TOKEN, Vocab

ROOT = Path(__file__).resolve().parent.parent

HANG_LIMIT = 60.0
"""Seconds a guarded call may take before it counts as looping for ever (each takes milliseconds)."""

T = TypeVar("T")


def returns(call: Callable[[], T], what: str) -> T:
    """``call()``'s result, or a failed test when it has not returned within :data:`HANG_LIMIT` seconds.

    The call runs in a daemon thread, so a call that never returns fails this test and leaves the
    rest of the session to go on.
    """
    outcome: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as error:  # handed to the test below
            errors.append(error)

    thread = threading.Thread(target=run, name=what, daemon=True)
    thread.start()
    thread.join(HANG_LIMIT)
    if thread.is_alive():
        pytest.fail(f"{what} did not return within {HANG_LIMIT:.0f} s: it loops for ever")
    if errors:
        raise errors[0]
    return outcome[0]


def nucleus_probs(vocab_size: int, nucleus: int, top_p: float, tied_outside: int = 0) -> torch.Tensor:
    """Probabilities ``(V,)``, float64, whose top-``top_p`` set holds exactly ``nucleus`` words.

    The first ``nucleus + tied_outside`` words share one probability, a little over
    ``top_p / nucleus``, so ``nucleus`` of them are just past ``top_p`` and one fewer are short of
    it (by far more than the tolerance); the other words share what is left, each less likely.
    With ``tied_outside`` the nucleus ends inside that run of equal words: of those, the nucleus
    holds the ``nucleus`` of lowest position.
    """
    even = top_p / nucleus * (1 + 0.1 / nucleus)
    tied = nucleus + tied_outside
    rest = vocab_size - tied
    probs = torch.full((vocab_size,), even, dtype=torch.float64)
    if rest:
        probs[tied:] = (1 - tied * even) / rest
        assert 0 < probs[-1] < even, "the words outside the run must be less likely than those in it"
    else:
        assert abs(tied * even - 1) < 1e-9, "a distribution of one run must sum to 1"
    return probs


def crafted_checkpoint(probs: torch.Tensor) -> Checkpoint:
    """A model whose next-word distribution is ``probs (V,)`` after any text, as a checkpoint.

    The project's own model with a full softmax whose weights are zero and whose bias is
    ``log(probs)``: the LSTM's state then does not matter. Word 0 is ``<unk>``.
    """
    vocab = Vocab([UNK_TOKEN, *(f"w{index}" for index in range(1, probs.numel()))])
    config = Config(rnn_size=8, embedding_size=8, min_word_freq=0)
    torch.manual_seed(0)
    model = LSTMLanguageModel(len(vocab), config).eval()
    with torch.no_grad():
        model.decoder.weight.zero_()
        model.decoder.bias.copy_(probs.log())
    weights = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
    return Checkpoint(config, vocab, weights)


@pytest.mark.slow  # starts the command line in a process of its own
def test_a_crafted_model_with_a_512_word_nucleus_generates_with_a_repetition_penalty(tmp_path: Path):
    # The repetition penalty sends generation down the plain path (the processors), whose nucleus
    # search once tried 512 words again and again when 512 were just enough: a command any
    # visitor's upload could send spinning for ever.
    # The 512 likely words are w1 to w512 (<unk>, word 0, is one of the unlikely ones: skipping it
    # leaves the nucleus as it is), and the prime's words are unlikely ones too.
    probs = nucleus_probs(1200, 512, 0.9).roll(1)
    prime = "w1100 w1101 w1102"
    path = save_checkpoint(crafted_checkpoint(probs), tmp_path / "crafted.pt")
    command = [sys.executable, "-m", "lstm_core", "generate", "--checkpoint", str(path), "--prime", prime]
    command += ["-n", "3", "--top-p", "0.9", "--repetition-penalty", "1.01", "--threads", "1"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=HANG_LIMIT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"generate did not return within {HANG_LIMIT:.0f} s: the nucleus search loops for ever")
    assert result.returncode == 0, result.stderr[-3000:]
    words = result.stdout.split()
    assert words[:3] == prime.split()
    assert len(words) == 6 and all(1 <= int(word[1:]) <= 512 for word in words[3:])  # drawn from the nucleus


# ---- the nucleus: the same words on both paths, for every size around the search's looks ----------

SHAPES = [
    # (vocabulary, words in the nucleus, top_p, tied words just outside it, sizes the search sorts)
    (2000, 1, 0.9, 0, [64]),
    (2000, 63, 0.9, 0, [64]),
    (2000, 64, 0.9, 0, [64, 512]),
    (2000, 65, 0.9, 0, [64, 512]),
    (2000, 511, 0.9, 0, [64, 512]),
    (2000, 512, 0.9, 0, [64, 512, 2000]),  # 512 looked enough, and was just not
    (2000, 513, 0.9, 0, [64, 2000]),  # the first 64 show that 512 cannot be enough
    (7000, 512, 0.9, 0, [64, 512, 7000]),
    (7000, 513, 0.5, 0, [64, 7000]),
    (7000, 1500, 0.9, 0, [64, 7000]),
    (2000, 2000, None, 0, [64, 2000]),
    (7000, 7000, None, 0, [64, 7000]),
    (2000, 63, 0.9, 5, [64]),
    (2000, 64, 0.9, 5, [64, 512]),
    (2000, 65, 0.9, 5, [64, 512]),
    (2000, 512, 0.9, 40, [64, 512, 2000]),
    (7000, 513, 0.9, 40, [64, 7000]),
]


def shape_id(shape: tuple) -> str:
    vocab_size, nucleus, _, tied, _ = shape
    return f"{nucleus} of {vocab_size} words" + (f", {tied} tied outside" if tied else "")


def distribution(vocab_size: int, nucleus: int, top_p: float | None, tied: int) -> tuple[torch.Tensor, float]:
    """Probabilities ``(V,)`` float64 and a ``top_p`` whose nucleus holds exactly ``nucleus`` words.

    Every word (``top_p`` None): probabilities falling gently from the first word to the last, and
    a ``top_p`` that the mass before the last word is short of.
    """
    if top_p is not None:
        return nucleus_probs(vocab_size, nucleus, top_p, tied), top_p
    probs = torch.linspace(2.0, 1.0, vocab_size, dtype=torch.float64)
    probs /= probs.sum()
    return probs, 1 - float(probs[-1]) / 2


@pytest.fixture(params=SHAPES, ids=shape_id, scope="module")
def shape(request) -> dict:
    """A shape's log-probs ``(V,)`` as a model gives them (float32), with its words at shuffled positions.

    The model's distribution is the shape itself after any text (a full softmax of zero weights
    and the shape as bias), so the fast path's cursor draws from exactly these log-probs.
    """
    vocab_size, nucleus, top_p, tied, looks = request.param
    probs, top_p = distribution(vocab_size, nucleus, top_p, tied)
    order = torch.randperm(vocab_size, generator=torch.Generator().manual_seed(nucleus + tied))
    shuffled = torch.empty_like(probs)
    shuffled[order] = probs  # word i of the shape now stands at position order[i]
    # The nucleus: the likely words, and of a run tied at its edge the ones of lowest position.
    expected = order[: nucleus + tied].sort().values[:nucleus]
    checkpoint = crafted_checkpoint(shuffled)
    model = checkpoint.build_model()
    cursor = FastLM(model).cursor()
    log_probs = cursor.log_probs().clone()
    return {
        "log_probs": log_probs,
        "cursor": cursor,
        "top_p": top_p,
        "expected": expected,
        "looks": looks,
        "nucleus": nucleus,
    }


def test_the_shapes_nucleus_is_the_size_it_was_built_to_be(shape):
    # Counted here by hand, in float64, from the log-probs the model gives.
    probs = shape["log_probs"].double().exp().sort(descending=True).values
    mass_before = probs.cumsum(0) - probs
    assert int((mass_before < shape["top_p"] - rules.TOP_P_TOLERANCE).sum()) == shape["nucleus"]
    assert shape["expected"].numel() == shape["nucleus"]


def test_the_plain_filter_and_processor_keep_the_nucleus(shape):
    log_probs, top_p = shape["log_probs"], shape["top_p"]
    filtered = returns(lambda: filter_top_p(log_probs, top_p), "filter_top_p")
    assert torch.equal(torch.nonzero(torch.isfinite(filtered)).view(-1), shape["expected"])
    processed = returns(lambda: TopP(top_p)(log_probs.unsqueeze(0), [History([])]), "TopP")
    assert torch.equal(torch.nonzero(torch.isfinite(processed[0])).view(-1), shape["expected"])


def test_the_fast_path_keeps_the_nucleus_and_draws_what_the_plain_path_draws(shape):
    log_probs, top_p, cursor = shape["log_probs"], shape["top_p"], shape["cursor"]
    assert torch.equal(returns(lambda: nucleus_ids(log_probs, top_p), "nucleus_ids"), shape["expected"])
    filtered = filter_top_p(log_probs, top_p)
    allowed = set(shape["expected"].tolist())
    for seed in range(5):
        ours, theirs = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
        drawn = returns(lambda generator=ours: sample_next(cursor, generator, top_p=top_p), "sample_next")
        assert drawn in allowed
        assert drawn == sample_index(filtered, theirs)


def test_the_nucleus_search_widens_to_each_size_once(shape, monkeypatch):
    looks: list[int] = []
    topk = torch.topk

    def counting_topk(values: torch.Tensor, count: int, *args, **kwargs):
        looks.append(count)
        return topk(values, count, *args, **kwargs)

    monkeypatch.setattr(rules.torch, "topk", counting_topk)
    size, _ = returns(lambda: rules.nucleus_size(shape["log_probs"], shape["top_p"]), "nucleus_size")
    assert size == shape["nucleus"]
    assert looks == shape["looks"]


# ---- the rules' float forms against their tensor forms ----------------------------------------------


def tie_heavy_log_probs(generator: torch.Generator, size: int, levels: int) -> torch.Tensor:
    """Normalised log-probs ``(size,)`` with only ``levels`` distinct values: ties everywhere."""
    return (torch.randint(0, levels, (size,), generator=generator).float() * 0.7).log_softmax(0)


@pytest.mark.parametrize("levels", [2, 5, 10_000])
def test_the_nucleus_counted_in_floats_is_the_tensor_searchs(levels):
    generator = torch.Generator().manual_seed(21)
    for size in (1, 7, 64, 65, 512, 513, 1000):
        values = tie_heavy_log_probs(generator, size, levels).sort(descending=True).values
        masses = [float(mass) for mass in (values.double() - float(values[0])).exp()]  # unnormalised
        for top_p in (0.05, 0.3, 0.5, 0.9, 0.99, 0.999999):
            size_of_tensor, _ = returns(lambda p=top_p, v=values: rules.nucleus_size(v, p), "nucleus_size")
            assert rules.nucleus_count(masses, top_p) == size_of_tensor, (size, top_p)


def test_a_draw_in_floats_lands_where_the_tensor_draw_lands():
    generator = torch.Generator().manual_seed(22)
    for size in (1, 2, 40, 1000):
        probs = torch.rand(size, generator=generator, dtype=torch.float64)
        probs[torch.rand(size, generator=generator) < 0.3] = 0.0  # words a filter removed
        probs[0] = 0.5
        masses = probs.tolist()
        for seed in range(30):
            ours, theirs = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
            index = rules.draw_index(probs, theirs)
            assert rules.draw_from_masses(masses, ours) == index
            assert masses[index] > 0
            assert torch.equal(torch.rand(1, generator=ours), torch.rand(1, generator=theirs))  # one number each


def test_a_draw_rounded_up_to_the_total_takes_the_last_word_with_mass(monkeypatch):
    monkeypatch.setattr(rules, "uniform", lambda generator: torch.ones(1, dtype=torch.float64))
    probs = torch.tensor([0.25, 0.5, 0.25, 0.0, 0.0], dtype=torch.float64)
    generator = torch.Generator()
    assert rules.draw_index(probs, generator) == 2
    assert rules.draw_from_masses(probs.tolist(), generator) == 2


def test_the_top_k_order_in_floats_is_the_tensor_order():
    generator = torch.Generator().manual_seed(23)
    for _ in range(20):
        scores = tie_heavy_log_probs(generator, 300, 6)
        positions = torch.randperm(300, generator=generator).tolist()
        values = scores.tolist()
        # descending_order over values placed at those positions, read back as places.
        placed = torch.empty(300)
        placed[positions] = scores
        tensor_order = [positions.index(position) for position in rules.descending_order(placed, 300).tolist()]
        assert rules.ranked(values, positions) == tensor_order


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("temperature", 0.0),
        ("temperature", float("nan")),
        ("top_k", -1),
        ("top_k", rules.MAX_TOP_K + 1),
        ("top_k", 2.5),
        ("top_p", 0.0),
        ("top_p", 1.5),
        ("min_p", -0.1),
        ("min_p", 1.5),
    ],
)
def test_the_fast_path_refuses_what_the_processors_refuse(option, value):
    processor = {"temperature": Temperature, "top_k": TopK, "top_p": TopP, "min_p": MinP}[option]
    with pytest.raises(ValueError):
        processor(value)
    cursor = FastLM(crafted_checkpoint(nucleus_probs(100, 5, 0.9)).build_model()).cursor()
    with pytest.raises(ValueError):
        sample_next(cursor, torch.Generator().manual_seed(0), **{option: value})


def test_a_ban_is_lifted_only_when_it_would_leave_no_word():
    assert not rules.ban_is_lifted({1, 2}, {0}, 4)
    assert rules.ban_is_lifted({1, 2, 3}, {0}, 4)
    assert rules.ban_is_lifted({0, 1, 2, 3}, set(), 4)
    assert not rules.ban_is_lifted({0, 1}, {1}, 3)


# ---- one home: where the rules live and who may import whom ----------------------------------------


def module_tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def imported_modules(tree: ast.Module) -> set[str]:
    """Every module a file imports (at any level, ``TYPE_CHECKING`` blocks included)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_each_rule_constant_is_defined_in_the_rules_module_only():
    constants = {"GREEDY_TEMPERATURE", "TOP_P_TOLERANCE", "MIN_P_TOLERANCE", "MAX_TOP_K", "NUCLEUS_LOOKS"}
    homes: dict[str, list[str]] = {name: [] for name in constants}
    for path in sorted((ROOT / "lstm_core").rglob("*.py")):
        for node in module_tree(path).body:
            targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
            for target in targets:
                if isinstance(target, ast.Name) and target.id in constants:
                    homes[target.id].append(str(path.relative_to(ROOT)))
    assert homes == {name: ["lstm_core/sampling/rules.py"] for name in constants}


def test_sampling_takes_random_numbers_in_the_rules_draw_only():
    callers = []
    model = ROOT / "lstm_core" / "model"
    for path in [*(ROOT / "lstm_core" / "sampling").glob("*.py"), model / "fast.py", model / "cursor.py"]:
        for node in ast.walk(module_tree(path)):
            if isinstance(node, ast.Attribute) and node.attr in {"rand", "multinomial", "bernoulli", "randint"}:
                callers.append(f"{path.name}:{node.lineno}")
    assert [caller.split(":")[0] for caller in callers] == ["rules.py"], callers


def test_the_rules_module_is_a_leaf_and_the_model_never_imports_sampling():
    leaf = imported_modules(module_tree(ROOT / "lstm_core" / "sampling" / "rules.py"))
    outside = {name for name in leaf if name.split(".")[0] not in sys.stdlib_module_names}
    assert outside <= {"torch"}, outside
    for path in (ROOT / "lstm_core" / "model").glob("*.py"):
        imports = imported_modules(module_tree(path))
        assert not [name for name in imports if name.startswith("lstm_core.sampling")], path.name
