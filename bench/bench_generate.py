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
vocabulary), e.g. the demo model the Generate page starts with. ``--cell gru`` (or ``rnn``) builds the
random models with that cell; every cell takes the fast path (:mod:`lstm_core.model.fast`), and the
first line printed says whether the model measured does.

``--race`` instead races the project's own entry points against what a PyTorch user would write,
alternated within one run so that background load hits them alike, with 1 thread, on the demo
model and a random 2 x 256 model (adaptive; ``--race-layers adaptive,full`` adds the full softmax):

* **plain**: ``nn.Embedding``, ``nn.LSTM`` (or the cell's ``nn.GRU``, ``nn.RNN``) over the prime and then
  once per word with its state,
  torch's own ``nn.AdaptiveLogSoftmaxWithLoss`` with the model's cut-offs and weights copied in
  (``.log_prob`` then argmax, or ``torch.multinomial`` of the filtered softmax), and for scoring
  ``nn.LSTM`` over the whole text then ``.log_prob`` of every position, each word's value and rank;
* **generate**: :func:`generate` from the prime text (tokenising and priming included);
* **regenerate**: :meth:`StepGenerator.regenerate`, from the cached post-prime state;
* **score**: :func:`score` of the text.

Every generator writes the same number of words and never ``<unk>``; it prints ms per word
(medians) and each entry point's ratio to plain (the median of the ratios of neighbouring runs),
and the load average before and after. ``--profile`` prints where one sampled word of
:func:`generate` spends its time.

Run: ``python bench/bench_generate.py [--threads 1,2] [--repeats 7] [--checkpoint PATH]``
or ``python bench/bench_generate.py --race [--repeats 15] [--words 1000]``
or ``python bench/bench_generate.py --profile``.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import itertools
import os
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

# `python bench/bench_generate.py` puts bench/, not the repository root, on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lstm_core.config import Config
from lstm_core.data.dataset import prepare
from lstm_core.evaluation.scoring import score
from lstm_core.model.cells import recurrent_module
from lstm_core.model.checkpoint import load_checkpoint
from lstm_core.model.fast import fast_path
from lstm_core.model.network import LSTMLanguageModel, choose_cutoffs
from lstm_core.sampling.decoding import generate
from lstm_core.sampling.options import SamplingOptions
from lstm_core.sampling.step import StepGenerator
from lstm_core.text.cleaning import tokenize
from lstm_core.text.corpus import bundled_plays
from lstm_core.text.vocab import UNK_INDEX, Vocab

PRIME = "to be or not to be that is the question"
WORDS_PER_RUN = 200
RACE_WORDS = 1000
DEMO = Path(__file__).resolve().parents[1] / "models" / "demo.pt"


def median_seconds(run: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``run`` over ``repeats`` calls, after one warm-up call."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def print_table(
    threads: str,
    models: dict[str, Callable[[], LSTMLanguageModel]],
    measure: Callable[[LSTMLanguageModel], dict[str, float]],
    digits: int,
) -> None:
    """One Markdown row per thread count (comma-separated) and model: the figures ``measure`` returns."""
    header = None
    for count in (int(t) for t in threads.split(",")):
        torch.set_num_threads(count)
        for output_layer, make_model in models.items():
            results = measure(make_model())
            if header is None:
                header = ["threads", "output layer", *results]
                print("| " + " | ".join(header) + " |")
                print("|" + "|".join("---" for _ in header) + "|")
            cells = [str(count), output_layer, *(f"{value:.{digits}f}" for value in results.values())]
            print("| " + " | ".join(cells) + " |", flush=True)


def build_model(vocab: Vocab, output_layer: str, cell: str = "lstm") -> LSTMLanguageModel:
    torch.manual_seed(0)
    config = Config(cell=cell, rnn_size=256, num_layers=2, output_layer=output_layer)
    cutoffs = choose_cutoffs(vocab.counts) if output_layer == "adaptive" else None
    return LSTMLanguageModel(len(vocab), config, cutoffs).eval()


def describe(model: LSTMLanguageModel) -> str:
    """``2 x 256 GRU, adaptive softmax, fast path``: the model, and whether generation and scoring take the fast one."""
    path = "fast path" if fast_path(model) is not None else "plain path (the fast one does not cover it)"
    return f"{model.num_layers} x {model.rnn_size} {model.cell.upper()}, {model.output_layer} softmax, {path}"


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


# ---- the race: a plain PyTorch loop against the project's entry points -----------------------


class PlainLM(nn.Module):
    """The model's architecture as stock PyTorch modules, with the model's weights copied in.

    torch's adaptive softmax differs in two details that do not change its cost much: each tail
    has a projection before its output matrix (here ``div_value`` 1, set to the identity: one
    ``H x H`` product per tail more than the model) and no bias (the model's tail biases are left
    out, so with a trained model the tails' numbers differ slightly; random models have zero
    biases and give the same numbers).
    """

    def __init__(self, model: LSTMLanguageModel) -> None:
        super().__init__()
        hidden, vocab_size = model.rnn_size, model.vocab_size
        self.embedding = nn.Embedding(vocab_size, model.embedding.embedding_dim)
        self.recurrent = recurrent_module(model.cell, model.embedding.embedding_dim, hidden, model.num_layers, 0.0)
        self.adaptive = model.output_layer == "adaptive"
        with torch.no_grad():
            self.embedding.weight.copy_(model.embedding.weight)
            self.recurrent.load_state_dict(model.recurrent.state_dict())
            if self.adaptive:
                ours = model.adaptive
                self.softmax = nn.AdaptiveLogSoftmaxWithLoss(
                    hidden, vocab_size, model.cutoffs, div_value=1.0, head_bias=True
                )
                self.softmax.head.weight.copy_(torch.cat([ours.weight[: ours.head_size], ours.cluster_weight]))
                self.softmax.head.bias.copy_(torch.cat([ours.bias[: ours.head_size], ours.cluster_bias]))
                for tail, (start, end) in zip(self.softmax.tail, itertools.pairwise(ours.bounds[1:]), strict=True):
                    tail[0].weight.copy_(torch.eye(hidden))
                    tail[1].weight.copy_(ours.weight[start:end])
            else:
                self.decoder = nn.Linear(hidden, vocab_size)
                self.decoder.load_state_dict(model.decoder.state_dict())
        self.eval()

    def log_probs(self, hidden: Tensor) -> Tensor:
        """``(N, H)`` -> ``(N, V)``."""
        if self.adaptive:
            return self.softmax.log_prob(hidden)
        return torch.log_softmax(self.decoder(hidden), dim=-1)


def plain_generate(plain: PlainLM, prime_ids: Tensor, words: int, choose: Callable[[Tensor], int]) -> list[int]:
    """``words`` words after ``prime_ids (1, T)``: the cell's ``nn`` module over the prime, then once per word."""
    out: list[int] = []
    with torch.no_grad():
        output, state = plain.recurrent(plain.embedding(prime_ids))
        hidden = output[:, -1]
        for position in range(words):
            log_probs = plain.log_probs(hidden)  # (1, V)
            log_probs[0, UNK_INDEX] = float("-inf")
            index = choose(log_probs[0])
            out.append(index)
            if position + 1 < words:
                output, state = plain.recurrent(plain.embedding(torch.tensor([[index]])), state)
                hidden = output[:, -1]
    return out


def plain_sampler(temperature: float, top_k: int, top_p: float, generator: torch.Generator) -> Callable[[Tensor], int]:
    """Temperature, then top-k, then top-p, then ``torch.multinomial``: the usual plain recipe."""

    def choose(log_probs: Tensor) -> int:
        scores = log_probs / temperature
        if not top_k:
            return int(torch.multinomial(scores.softmax(-1), 1, generator=generator))
        values, ids = torch.topk(scores, top_k)  # highest first
        probs = values.softmax(-1)
        if top_p < 1.0:
            probs[(probs.cumsum(-1) - probs) >= top_p] = 0.0
        return int(ids[torch.multinomial(probs, 1, generator=generator)])

    return choose


def plain_score(plain: PlainLM, ids: Tensor) -> tuple[Tensor, Tensor]:
    """Log-prob and rank of each word after the first, ``ids (N,)``: one LSTM pass, the full distribution."""
    with torch.no_grad():
        hidden, _ = plain.recurrent(plain.embedding(ids[None, :-1]))
        log_probs = plain.log_probs(hidden[0])  # (N - 1, V)
        target = log_probs.gather(1, ids[1:, None])
        return target[:, 0], (log_probs > target).sum(dim=1) + 1


RACE_TASKS = {
    "greedy": SamplingOptions(),
    "sample T 0.8": SamplingOptions(method="sample", temperature=0.8, seed=1),
    "sample T 0.8, top-k 40, top-p 0.95": SamplingOptions(
        method="sample", temperature=0.8, top_k=40, top_p=0.95, seed=1
    ),
}


def race_model(name: str, model: LSTMLanguageModel, vocab: Vocab, text: str, words: int, repeats: int) -> None:
    """Print one model's race: per-word ms of plain and of each entry point, and their ratios to plain."""
    plain = PlainLM(model)
    prime_ids = torch.tensor([vocab.encode(tokenize(PRIME))])
    stepper = StepGenerator(model, vocab, PRIME)
    score_ids = torch.tensor(vocab.encode(tokenize(text)))
    scored_words = score_ids.numel() - 1
    print(f"\n{name}: {len(vocab):,} words, {describe(model)}")
    print("| task | plain ms/word | project ms/word | **project / plain** |")
    print("|---|---|---|---|")
    for task, options in RACE_TASKS.items():

        def plain_run(options: SamplingOptions = options) -> object:
            if options.method == "greedy":
                return plain_generate(plain, prime_ids, words, lambda row: int(row.argmax()))
            generator = torch.Generator().manual_seed(options.seed or 0)
            choose = plain_sampler(options.temperature, options.top_k, options.top_p, generator)
            return plain_generate(plain, prime_ids, words, choose)

        runs = {
            "plain": plain_run,
            "generate": functools.partial(generate, model, vocab, PRIME, words, options),
            "regenerate": functools.partial(stepper.regenerate, words, options),
        }
        same = generate(model, vocab, PRIME, words, options) == stepper.regenerate(words, options)
        report_race(task + ("" if same else " (generate and regenerate differ!)"), runs, repeats, words)
    runs = {
        "plain": functools.partial(plain_score, plain, score_ids),
        "score": functools.partial(score, model, vocab, text),
    }
    report_race(f"score {scored_words:,} words", runs, repeats, scored_words)


def report_race(task: str, runs: dict[str, Callable[[], object]], repeats: int, words: int) -> None:
    """Time each run ``repeats`` times, taking turns (the order rotates), and print a table row per entry point."""
    for run in runs.values():
        run()  # warm-up
    names = list(runs)
    times: dict[str, list[float]] = {name: [] for name in names}
    for repeat in range(repeats):
        for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
            start = time.perf_counter()
            runs[name]()
            times[name].append(time.perf_counter() - start)
    plain_ms = statistics.median(times["plain"]) * 1000 / words
    for name in names[1:]:
        ratio = statistics.median(mine / base for mine, base in zip(times[name], times["plain"], strict=True))
        mine_ms = statistics.median(times[name]) * 1000 / words
        print(f"| {task}: {name} | {plain_ms:.3f} | {mine_ms:.3f} | **{ratio:.2f}** |", flush=True)


def race(args: argparse.Namespace, vocab: Vocab, text: str) -> None:
    """The demo model (or ``--checkpoint``), then a random 2 x 256 model per ``--race-layers``, 1 thread."""
    torch.set_num_threads(1)
    print(
        f"torch threads: 1; {args.words} generated words; medians of {args.repeats} runs of each contender, taken "
        f"in turns; load average {os.getloadavg()[0]:.1f}"
    )
    checkpoint = load_checkpoint(args.checkpoint or DEMO)
    race_model(
        str(args.checkpoint or "models/demo.pt"),
        checkpoint.build_model(),
        checkpoint.vocab,
        text,
        args.words,
        args.repeats,
    )
    for output_layer in args.race_layers.split(","):
        model = build_model(vocab, output_layer, args.cell)
        race_model("random weights", model, vocab, text, args.words, args.repeats)
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")


def profile_project_step(words: int) -> None:
    """Where one sampled word of :func:`generate` goes (demo model, 1 thread)."""
    torch.set_num_threads(1)
    checkpoint = load_checkpoint(DEMO)
    model, vocab = checkpoint.build_model(), checkpoint.vocab
    options = SamplingOptions(method="sample", temperature=0.8, top_k=40, top_p=0.95, seed=1)
    generate(model, vocab, PRIME, words, options)
    profiler = cProfile.Profile()
    profiler.enable()
    generate(model, vocab, PRIME, words, options)
    profiler.disable()
    print(f"generate(), {words} sampled words (T 0.8, top-k 40, top-p 0.95), demo model, 1 thread:")
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(r"sampling|inference.py|model.py|topk|addmv", 24)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2", help="comma-separated torch thread counts (default 1,2)")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per figure (default 7)")
    parser.add_argument("--checkpoint", help="measure this trained model instead of the random 2 x 256 ones")
    parser.add_argument("--race", action="store_true", help="race plain PyTorch against the project's entry points")
    parser.add_argument("--race-layers", default="adaptive", help="output layers of the random race models")
    parser.add_argument("--words", type=int, default=RACE_WORDS, help="words per generation in the race")
    parser.add_argument("--profile", action="store_true", help="profile generate()'s sampled words")
    parser.add_argument("--cell", default="lstm", choices=("lstm", "gru", "rnn"), help="the random models' cell")
    args = parser.parse_args()

    plays = bundled_plays().text
    dataset = prepare(plays, 5)
    words = dataset.vocab.decode(dataset.valid[:1000].tolist())
    text = " ".join(words)  # 1,000 words; "<unk>" is cleaned to the unknown word "unk"
    vocab = dataset.vocab
    if args.profile:
        profile_project_step(1000)
        return
    if args.race:
        race(args, vocab, text)
        return
    described = f"random weights, {describe(build_model(vocab, 'full', args.cell))} or adaptive"
    models = {layer: functools.partial(build_model, vocab, layer, args.cell) for layer in ("full", "adaptive")}
    if args.checkpoint:
        checkpoint = load_checkpoint(args.checkpoint)
        vocab = checkpoint.vocab
        described = f"{args.checkpoint} ({describe(checkpoint.build_model())})"
        models = {checkpoint.config.output_layer: checkpoint.build_model}
    print(
        f"vocabulary: {len(vocab):,} words; model: {described}; "
        f"torch default threads here: {torch.get_num_threads()}; medians of {args.repeats} runs"
    )
    print_table(args.threads, models, lambda model: measure(model, vocab, text, args.repeats), digits=2)


if __name__ == "__main__":
    main()
