"""How fast the "Inside the LSTM" computations are for the default preset's model size.

Builds a 1 x 512 LSTM (tied weights, as the default preset) over the bundled plays' vocabulary
(min_word_freq 5, about 7,000 words), for both output layers, and prints a Markdown table of
medians over 500 words of raw play text (the same text a visitor might paste):

* forward: the model's own ``nn.LSTM`` pass over the 500 words (the reference, keeps nothing);
* trace: :func:`trace`, every gate and memory of every word (target: at most 200 ms);
* trace + log-probs: the same with the next-word distribution after every word, ``(500, V)``;
* features + search: :func:`word_features` of the raw text, then :func:`units_for_feature` on
  ``h`` for each of the three features and :func:`units_for_span` for a 10-word span;
* neighbours + PCA: :func:`nearest_words` of one word and :func:`pca_2d` of the 300 most
  frequent words;
* step panel: what the step-by-step tab recomputes when a slider moves -- the softmax
  walk-through of the top 10 words with temperature, top-k, top-p and min-p on
  (:func:`softmax_walkthrough`), and the gates of the word just read (:func:`word_just_read`).

The weights are random: the cost does not depend on them. ``--checkpoint PATH`` measures a
trained model instead (its own vocabulary and size).

Run: ``python bench/bench_inspection.py [--threads 1,2] [--repeats 7] [--words 500] [--checkpoint PATH]``.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

import torch

# `python bench/bench_inspection.py` puts bench/, not the repository root, on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_generate import median_seconds, print_table
from lstm_core.config import Config
from lstm_core.explain.embeddings import most_frequent_ids, nearest_words, pca_2d
from lstm_core.explain.inspection import trace
from lstm_core.explain.units import units_for_feature, units_for_span, word_features
from lstm_core.explain.walkthrough import softmax_walkthrough, word_just_read
from lstm_core.model.checkpoint import load_checkpoint
from lstm_core.model.network import LSTMLanguageModel, choose_cutoffs
from lstm_core.sampling.options import SamplingOptions
from lstm_core.sampling.step import StepGenerator
from lstm_core.text.cleaning import tokenize
from lstm_core.text.corpus import bundled_plays
from lstm_core.text.vocab import Vocab


def build_model(vocab: Vocab, output_layer: str) -> LSTMLanguageModel:
    torch.manual_seed(0)
    config = Config(rnn_size=512, num_layers=1, tie_weights=True, output_layer=output_layer)
    cutoffs = choose_cutoffs(vocab.counts) if output_layer == "adaptive" else None
    return LSTMLanguageModel(len(vocab), config, cutoffs).eval()


def raw_passage(plays: str, words: int) -> str:
    """Whole lines of the plays from a third of the way in, until they hold ``words`` words."""
    lines = plays[len(plays) // 3 :].splitlines()[1:]  # the first piece may be a cut line
    taken: list[str] = []
    count = 0
    for line in lines:
        if count >= words:
            break
        taken.append(line)
        count += len(tokenize(line))
    return "\n".join(taken)


def measure(model: LSTMLanguageModel, vocab: Vocab, text: str, words: int, repeats: int) -> dict[str, float]:
    """Milliseconds for each benchmark on one model."""
    features = word_features(text)
    ids = torch.tensor(vocab.encode(features.words[:words]))
    embedding = model.embedding.weight
    frequent = most_frequent_ids(vocab, 300)

    def forward() -> None:
        with torch.no_grad():
            model(ids[None])

    hidden = trace(model, ids).output

    def search() -> None:
        found = word_features(text)
        for feature in (found.vector("line_position"), found.vector("in_question"), found.vector("after_word", "i")):
            units_for_feature(hidden, feature[:words])
        units_for_span(hidden, 100, 110)

    word = vocab.itos[10]
    stepper = StepGenerator(model, vocab, " ".join(features.words[:20]))
    stepper.step(options=SamplingOptions())
    options = SamplingOptions(method="sample", temperature=0.8, top_k=40, top_p=0.9, min_p=0.05)

    def step_panel() -> None:
        softmax_walkthrough(stepper, options, n=10)
        word_just_read(stepper)

    results = {
        "forward ms": median_seconds(forward, repeats),
        "trace ms": median_seconds(lambda: trace(model, ids), repeats),
        "trace + log-probs ms": median_seconds(lambda: trace(model, ids, log_probs=True), repeats),
        "features + search ms": median_seconds(search, repeats),
        "neighbours + PCA ms": median_seconds(
            lambda: (nearest_words(embedding, vocab, word), pca_2d(embedding, frequent)), repeats
        ),
        "step panel ms": median_seconds(step_panel, repeats),
    }
    return {name: seconds * 1000 for name, seconds in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2", help="comma-separated torch thread counts (default 1,2)")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per figure (default 7)")
    parser.add_argument("--words", type=int, default=500, help="words of text to trace (default 500)")
    parser.add_argument("--checkpoint", help="measure this trained model instead of the random 1 x 512 ones")
    args = parser.parse_args()

    plays = bundled_plays().text
    text = raw_passage(plays, args.words)
    if args.checkpoint:
        checkpoint = load_checkpoint(args.checkpoint)
        config = checkpoint.config
        vocab = checkpoint.vocab
        described = f"{args.checkpoint} ({config.num_layers} x {config.rnn_size} LSTM, {config.output_layer} softmax)"
        models = {config.output_layer: checkpoint.build_model}
    else:
        vocab = Vocab.build(tokenize(plays), 5)
        described = "1 x 512 LSTM, tied, random weights"
        models = {layer: functools.partial(build_model, vocab, layer) for layer in ("full", "adaptive")}
    print(
        f"vocabulary: {len(vocab):,} words; model: {described}; text: {args.words} words of raw play text; "
        f"torch default threads here: {torch.get_num_threads()}; medians of {args.repeats} runs"
    )
    print_table(args.threads, models, lambda model: measure(model, vocab, text, args.words, args.repeats), digits=1)


if __name__ == "__main__":
    main()
