"""``evaluate``: a model's loss and perplexity on a text file or on bundled plays."""

from __future__ import annotations

import argparse
import json

from lstm_core.cli.flags import UsageError, names, set_threads
from lstm_core.model.checkpoint import load_checkpoint
from lstm_core.text.corpus import bundled_plays, text_from_file


def add_parser(commands: argparse._SubParsersAction) -> None:
    """The ``evaluate`` command and its flags."""
    evaluate = commands.add_parser("evaluate", help="perplexity of a model on a text")
    evaluate.add_argument("--checkpoint", required=True, metavar="PATH")
    evaluate.add_argument("--text-file", metavar="PATH", help="a text file to score")
    evaluate.add_argument("--plays", metavar="NAMES", help="or comma-separated bundled plays to score")
    evaluate.add_argument("--threads", type=int, metavar="N")
    evaluate.add_argument("--json", action="store_true", help="machine-readable output")
    evaluate.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Score the text with the checkpoint's model, printing one line (or JSON)."""
    import torch

    from lstm_core.evaluation.scoring import evaluate, perplexity
    from lstm_core.text.cleaning import tokenize

    set_threads(args.threads)
    checkpoint = load_checkpoint(args.checkpoint)
    if bool(args.text_file) == bool(args.plays):
        raise UsageError("give exactly one of --text-file or --plays")
    corpus = text_from_file(args.text_file) if args.text_file else bundled_plays(names(args.plays))
    tokens = tokenize(corpus.text)
    vocab = checkpoint.vocab
    ids = torch.tensor(vocab.encode(tokens), dtype=torch.long)
    if ids.numel() < 2:
        raise UsageError(f"{corpus.name} has fewer than 2 words after cleaning; nothing to evaluate")
    model = checkpoint.build_model()
    loss, count = evaluate(model, ids, checkpoint.config.training_seq_len)
    coverage = vocab.coverage(tokens)
    result = {
        "checkpoint": str(args.checkpoint),
        "text": corpus.name,
        "words": coverage.tokens,
        "scored": count,
        "unknown_share": round(coverage.unknown_share, 4),
        "loss": loss,
        "perplexity": perplexity(loss),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"{corpus.name}: {coverage.tokens:,} words ({coverage.unknown_share:.1%} unknown to the model), "
            f"loss {loss:.4f}, perplexity {perplexity(loss):.2f}"
        )
    return 0
