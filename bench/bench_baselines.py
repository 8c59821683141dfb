"""How long the perplexity chart's baselines take to build and score, and what they score.

    python bench/bench_baselines.py                 # the full bundled plays, 1 thread
    python bench/bench_baselines.py --orders 0,1,2,3,4,5 --repeats 5

The text is what a training run on the bundled plays uses: ``prepare(bundled_plays().text,
min_word_freq, (0.9, 0.05, 0.05))``. For each repeat it times fitting every baseline at once
(``fit_baselines``: the n-grams are counted once for all orders) and scoring each on the
validation split, then prints the medians, the perplexities, the peak memory of the process, and
the size and load time of a saved model of the highest order. Last, it scores the validation
split the way ``lstm_core.evaluation.scoring.evaluate`` cuts it (16 rows, each row's first token only
context, the remainder dropped) to show how little that changes the figures.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from lstm_core.data.dataset import prepare
from lstm_core.evaluation.baselines import MAX_ORDER, baseline_label, fit_baselines, score_baselines
from lstm_core.evaluation.ngram import KneserNey
from lstm_core.evaluation.scoring import EVAL_BATCH_SIZE
from lstm_core.text.corpus import bundled_plays


def rows_like_evaluate(ids: torch.Tensor, seq_len: int = 35, batch_size: int = EVAL_BATCH_SIZE) -> list[torch.Tensor]:
    """The contiguous rows ``evaluate`` scores: at most ``batch_size``, the remainder dropped."""
    rows = max(1, min(batch_size, ids.numel() // (seq_len + 1)))
    return list(ids[: ids.numel() // rows * rows].view(rows, -1))


def level_bytes(models: dict[int, KneserNey]) -> dict[int, int]:
    """Bytes of each distinct level array set: models of several orders share their lower levels."""
    return {id(level): level.nbytes for model in models.values() for level in model._levels}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", default=",".join(str(order) for order in range(MAX_ORDER + 1)))
    parser.add_argument("--min-word-freq", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    orders = [int(order) for order in args.orders.split(",")]

    started = time.perf_counter()
    dataset = prepare(bundled_plays().text, args.min_word_freq, (0.9, 0.05, 0.05), name="plays")
    print(f"{dataset.summary()}; prepared in {time.perf_counter() - started:.1f} s")
    memory_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    fit_times, score_times, total_times = [], {order: [] for order in orders}, []
    models: dict[int, KneserNey] = {}
    for _ in range(args.repeats):
        models.clear()  # so that the peak memory is that of one build
        started = time.perf_counter()
        models = fit_baselines(dataset.train, len(dataset.vocab), orders)
        fitted = time.perf_counter()
        fit_times.append(fitted - started)
        for order in orders:
            begin = time.perf_counter()
            baselines = score_baselines({order: models[order]}, dataset.valid)
            score_times[order].append(time.perf_counter() - begin)
        total_times.append(time.perf_counter() - started)
    memory_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    baselines = score_baselines(models, dataset.valid)
    print(
        f"\nfit all {len(orders)} baselines: {statistics.median(fit_times):.2f} s; fit and score all: "
        f"{statistics.median(total_times):.2f} s (medians of {args.repeats}, {args.threads} thread(s))"
    )
    print(
        f"peak memory {memory_peak:.0f} MB, {memory_peak - memory_before:.0f} MB more than after preparing the text; "
        f"the models keep {sum(level_bytes(models).values()) / 1e6:.0f} MB\n"
    )
    print(f"| {'baseline':<22} | validation perplexity | n-grams | model MB | score s |")
    print("|---|---|---|---|---|")
    for baseline in baselines:
        model = models[baseline.order]
        print(
            f"| {baseline_label(baseline.order):<22} | {baseline.perplexity:,.2f} | {model.ngrams:,} | "
            f"{model.nbytes / 1e6:.1f} | {statistics.median(score_times[baseline.order]):.3f} |"
        )
    print(f"(each scored on {baselines[0].tokens:,} tokens: the validation split after its first token)")

    top = models[max(orders)]
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "ngram.npz"
        started = time.perf_counter()
        top.save(path, dataset.vocab)
        saved = time.perf_counter()
        loaded = KneserNey.load(path, dataset.vocab)
        load_s = time.perf_counter() - saved
        size = path.stat().st_size
    bound = 12 * top.order * dataset.train.numel()
    same = bool(np.array_equal(loaded.token_log_probs(dataset.valid), top.token_log_probs(dataset.valid)))
    print(
        f"\nsaved {top.order}-gram: {size / 1e6:.1f} MB on disk (bound before compression: {bound / 1e6:.1f} MB); "
        f"save {saved - started:.2f} s, load {load_s:.2f} s; same probabilities after loading: {same}"
    )

    print("\nscored as evaluate() cuts the validation split (16 rows):")
    rows = rows_like_evaluate(dataset.valid)
    for order in orders:
        log_probs = np.concatenate([models[order].token_log_probs(row) for row in rows])
        as_evaluate = float(np.exp(-log_probs.mean()))
        whole = next(b.perplexity for b in baselines if b.order == order)
        print(
            f"  {baseline_label(order):<22} {as_evaluate:,.2f} on {log_probs.size:,} tokens "
            f"({as_evaluate / whole - 1:+.3%} against the whole stream)"
        )


if __name__ == "__main__":
    main()
