"""How fast generation, regeneration and scoring are for the app's model size.

Builds a 2 x 256 LSTM over the bundled plays' full vocabulary (min_word_freq 5, about 7,000
words), for both output layers, and prints a Markdown table of medians. The weights are random:
the model's cost does not depend on them, and their nearly flat distribution is the slowest case
for top-p (the nucleus holds most of the vocabulary).

* ms per generated word: one-shot :func:`generate` of 200 words (prime included), divided by 200,
  for greedy, for sampling (temperature 0.8, top-k 40, top-p 0.95) and for beam search (width 4,
  50 words);
* regenerate 50 words: :meth:`StepGenerator.regenerate` after a temperature change (the app's
  slider), from the cached post-prime state;
* score 1,000 words: :func:`score` on 1,000 words of the plays.

``--checkpoint models/demo.pt`` measures a trained model instead (the same figures, its own
vocabulary), e.g. the demo model the Generate page starts with.

Run: ``python bench/bench_generate.py [--threads 1,2] [--repeats 7] [--checkpoint PATH]``.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

# `python bench/bench_generate.py` puts bench/, not the repository root, on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lstm_core.checkpoint import load_checkpoint
from lstm_core.config import Config
from lstm_core.corpus import bundled_plays
from lstm_core.data import prepare
from lstm_core.model import LSTMLanguageModel, choose_cutoffs
from lstm_core.sampling import SamplingOptions, StepGenerator, generate, score
from lstm_core.vocab import Vocab

PRIME = "to be or not to be that is the question"
WORDS_PER_RUN = 200


def median_seconds(run: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``run`` over ``repeats`` calls, after one warm-up call."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def build_model(vocab: Vocab, output_layer: str) -> LSTMLanguageModel:
    torch.manual_seed(0)
    config = Config(rnn_size=256, num_layers=2, output_layer=output_layer)
    cutoffs = choose_cutoffs(vocab.counts) if output_layer == "adaptive" else None
    return LSTMLanguageModel(len(vocab), config, cutoffs).eval()


def measure(model: LSTMLanguageModel, vocab: Vocab, text: str, repeats: int) -> dict[str, float]:
    """Milliseconds for each benchmark on one model."""
    sample = SamplingOptions(method="sample", temperature=0.8, top_k=40, top_p=0.95, seed=1)
    greedy = SamplingOptions()
    beam = SamplingOptions(method="beam", beam_width=4)
    results = {
        "greedy ms/word": median_seconds(lambda: generate(model, vocab, PRIME, WORDS_PER_RUN, greedy), repeats)
        / WORDS_PER_RUN,
        "sample ms/word": median_seconds(lambda: generate(model, vocab, PRIME, WORDS_PER_RUN, sample), repeats)
        / WORDS_PER_RUN,
        "beam-4 ms/word": median_seconds(lambda: generate(model, vocab, PRIME, 50, beam), max(3, repeats // 2)) / 50,
    }
    stepper = StepGenerator(model, vocab, PRIME)
    temperatures = iter([0.5, 1.0, 1.5, 2.0] * (repeats + 1))
    results["regenerate 50 ms"] = median_seconds(
        lambda: stepper.regenerate(50, SamplingOptions(method="sample", temperature=next(temperatures), seed=7)),
        repeats,
    )
    results["score 1,000 words ms"] = median_seconds(lambda: score(model, vocab, text), repeats)
    return {name: seconds * 1000 for name, seconds in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2", help="comma-separated torch thread counts (default 1,2)")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per figure (default 7)")
    parser.add_argument("--checkpoint", help="measure this trained model instead of the random 2 x 256 ones")
    args = parser.parse_args()

    plays = bundled_plays().text
    dataset = prepare(plays, 5)
    words = dataset.vocab.decode(dataset.valid[:1000].tolist())
    text = " ".join(words)  # 1,000 words; "<unk>" is cleaned to the unknown word "unk"
    vocab = dataset.vocab
    described = "2 x 256 LSTM, random weights"
    models = {layer: functools.partial(build_model, vocab, layer) for layer in ("full", "adaptive")}
    if args.checkpoint:
        checkpoint = load_checkpoint(args.checkpoint)
        config = checkpoint.config
        vocab = checkpoint.vocab
        described = f"{args.checkpoint} ({config.num_layers} x {config.rnn_size} LSTM, {config.output_layer} softmax)"
        models = {config.output_layer: checkpoint.build_model}
    print(
        f"vocabulary: {len(vocab):,} words; model: {described}; "
        f"torch default threads here: {torch.get_num_threads()}; medians of {args.repeats} runs"
    )
    header = None
    for threads in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads)
        for output_layer, make_model in models.items():
            results = measure(make_model(), vocab, text, args.repeats)
            if header is None:
                header = ["threads", "output layer", *results]
                print("| " + " | ".join(header) + " |")
                print("|" + "|".join("---" for _ in header) + "|")
            cells = [str(threads), output_layer, *(f"{value:.2f}" for value in results.values())]
            print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
