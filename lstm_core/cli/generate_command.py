"""``generate``: continue prime texts with a model, choosing each word as the sampling flags say."""

from __future__ import annotations

import argparse
import json

from lstm_core.cli.flags import add_dataclass_flags, sampling_options_from_args, set_threads
from lstm_core.model.checkpoint import load_checkpoint
from lstm_core.sampling.decoding import MAX_LENGTH
from lstm_core.sampling.options import SamplingOptions


def add_parser(commands: argparse._SubParsersAction) -> None:
    """The ``generate`` command: a flag per :class:`SamplingOptions` field, with its default."""
    generate = commands.add_parser("generate", help="continue prime texts")
    generate.add_argument("--checkpoint", required=True, metavar="PATH")
    generate.add_argument(
        "--prime", action="append", metavar="TEXT", help="text to continue (repeatable; default: the config's)"
    )
    generate.add_argument(
        "-n", "--length", type=int, default=20, help=f"words to generate (default 20, at most {MAX_LENGTH:,})"
    )
    choosing = generate.add_argument_group(
        "how to choose each word (a sampling flag without --method means --method sample; --temperature 0 is greedy)"
    )
    add_dataclass_flags(choosing, SamplingOptions, show_defaults=True)
    generate.add_argument("--threads", type=int, metavar="N")
    generate.add_argument("--json", action="store_true", help="machine-readable output")
    generate.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """One line per prime text (or JSON), naming the prime's words the model does not know."""
    from lstm_core.sampling.decoding import generate

    set_threads(args.threads)
    options = sampling_options_from_args(args)
    checkpoint = load_checkpoint(args.checkpoint)
    model = checkpoint.build_model()
    primes = args.prime or list(checkpoint.config.prime_texts)
    results = []
    for prime in primes:
        generation = generate(model, checkpoint.vocab, prime, args.length, options)
        results.append(generation)
        if not args.json:
            unknown = (
                f"   [not in the vocabulary: {', '.join(generation.unknown_words)}]" if generation.unknown_words else ""
            )
            print(generation.text + unknown)
    if args.json:
        payload = [
            {"prime": p, "text": g.text, "continuation": g.words, "unknown_words": g.unknown_words}
            for p, g in zip(primes, results, strict=True)
        ]
        print(json.dumps(payload, indent=2))
    return 0
