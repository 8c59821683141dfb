"""The shipped demo model (models/demo.pt) is what the README says it is."""

from __future__ import annotations

import math
import re
import shlex
from pathlib import Path

import pytest
import torch

from lstm_core.cli.flags import config_from_args
from lstm_core.cli.main import build_parser
from lstm_core.config import RECIPE_PRIME_TEXTS
from lstm_core.evaluation.scoring import evaluate
from lstm_core.model.checkpoint import load_checkpoint
from lstm_core.sampling.decoding import generate
from lstm_core.sampling.options import SamplingOptions
from lstm_core.text.cleaning import tokenize
from lstm_core.text.corpus import bundled_plays

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "models" / "demo.pt"
HELD_OUT = ("hamlet", "the-tempest", "julius-caesar")


def readme_section() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    return readme[readme.index("## The demo model") :].split("\n## ", 1)[0]


@pytest.fixture(scope="module")
def demo():
    return load_checkpoint(DEMO)


def test_the_demo_model_loads_safely_with_its_config_and_vocabulary(demo):
    assert demo.optimizer is None  # model only
    assert all(t.dtype == torch.float16 for t in demo.weights.values() if t.is_floating_point())
    assert len(demo.vocab) > 5000 and demo.vocab.itos[0] == "<unk>"
    # It never saw the plays the README evaluates it on.
    assert all(play in demo.dataset["name"] for play in HELD_OUT)
    assert f"--holdout-plays {','.join(HELD_OUT)}" in readme_section()


@pytest.mark.slow
def test_its_held_out_perplexity_is_the_one_in_the_readme(demo):
    stated = float(re.search(r"its perplexity is \*\*([\d.]+)\*\*", readme_section()).group(1))
    tokens = tokenize(bundled_plays(HELD_OUT).text)
    ids = torch.tensor(demo.vocab.encode(tokens), dtype=torch.long)
    loss, _ = evaluate(demo.build_model(), ids, demo.config.training_seq_len)
    assert math.exp(loss) == pytest.approx(stated, abs=0.01)


def test_greedy_continuations_are_the_readme_ones_and_reproducible(demo):
    block = readme_section().split("```\n")[-2]  # the last fenced block: the continuations
    stated = block.strip().splitlines()
    assert len(stated) == len(RECIPE_PRIME_TEXTS)
    model = demo.build_model()
    for prime, line in zip(RECIPE_PRIME_TEXTS, stated, strict=True):
        runs = [generate(model, demo.vocab, prime, 12, SamplingOptions()) for _ in range(2)]
        assert runs[0].words == runs[1].words
        assert " ".join([*runs[0].prime_words, *runs[0].words]) == line


def test_the_readme_command_builds_the_demo_models_config(demo):
    commands = readme_section().split("```bash\n", 1)[1].split("```", 1)[0].replace("\\\n", " ")
    train = next(line for line in commands.splitlines() if line.startswith("python -m lstm_core train"))
    args = build_parser().parse_args(shlex.split(train)[3:])  # after "python -m lstm_core"
    assert config_from_args(args) == demo.config
