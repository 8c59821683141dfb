"""The sampling reference: what generation writes for a grid of options, pinned in a JSON fixture.

``python -m tests.sampling_reference > tests/data/sampling_reference.json`` records it (run once,
before a change to the sampling code); ``tests/test_decoding.py`` checks that every combination
still writes the same words. The model is tiny and randomly initialised with a fixed seed (no
training, so the numbers do not depend on how a CPU rounds an optimizer's updates); its weights
are scaled up so that the distributions are peaked, and ``<unk>`` gets about 5% of the mass, so
that the filters, the word rules and the ``stop`` rule all change the text somewhere in the grid.
"""

from __future__ import annotations

import itertools
import json
import sys
from typing import Any

import torch

from lstm_core.config import Config
from lstm_core.model.network import LSTMLanguageModel
from lstm_core.sampling.decoding import generate
from lstm_core.sampling.options import SamplingOptions
from lstm_core.text.cleaning import tokenize
from lstm_core.text.vocab import UNK_INDEX, Vocab
from tests.conftest import SONNET

PRIME = "shall i compare thee"
LENGTH = 15


def reference_model() -> tuple[LSTMLanguageModel, Vocab]:
    """A 16-unit model over sonnet 18's words, with peaked next-word distributions."""
    vocab = Vocab.build(tokenize(SONNET), 0)
    torch.manual_seed(0)
    model = LSTMLanguageModel(len(vocab), Config(rnn_size=16)).eval()
    with torch.no_grad():
        model.embedding.weight.mul_(10)
        model.lstm.weight_hh_l0.mul_(10)
        model.decoder.weight.mul_(25)
        model.decoder.bias[UNK_INDEX] = 0.5
    return model, vocab


def grid() -> list[dict[str, Any]]:
    """Option combinations: each filter and word rule on and off, for each of the three methods."""
    rules = [
        {"repetition_penalty": penalty, "no_repeat_ngram": ngram, "unknown": unknown}
        for penalty, ngram, unknown in itertools.product((1.0, 1.6), (0, 2), ("skip", "stop", "allow"))
    ]
    combos: list[dict[str, Any]] = []
    for rule, temperature, top_k, top_p in itertools.product(rules, (0.7, 1.4), (0, 5), (1.0, 0.8)):
        filters = {"temperature": temperature, "top_k": top_k, "top_p": top_p, "seed": 1}
        combos.append({"method": "sample", **filters, **rule})
    for rule in rules:
        combos.append({"method": "greedy", **rule})
        for width, length_penalty in ((2, 1.0), (4, 0.0), (4, 1.0)):
            combos.append({"method": "beam", "beam_width": width, "length_penalty": length_penalty, **rule})
    return combos


def record() -> dict[str, Any]:
    model, vocab = reference_model()
    cases = []
    for options in grid():
        result = generate(model, vocab, PRIME, LENGTH, SamplingOptions(**options))
        cases.append({"options": options, "words": result.continuation, "stopped": result.stopped_at_unknown})
    return {"prime": PRIME, "length": LENGTH, "cases": cases}


if __name__ == "__main__":
    torch.set_num_threads(1)
    reference = record()
    # One case per line: small, and a changed case shows as one changed line in a diff.
    lines = ",\n".join(json.dumps(case, separators=(",", ":")) for case in reference["cases"])
    sys.stdout.write(f'{{"prime": "{PRIME}", "length": {LENGTH}, "cases": [\n{lines}\n]}}\n')
