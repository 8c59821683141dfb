"""``export``: a small model-only copy of a checkpoint (no optimizer state), for sharing."""

from __future__ import annotations

import argparse
from pathlib import Path

from lstm_core.cli.flags import UsageError
from lstm_core.model.checkpoint import load_checkpoint, save_checkpoint


def add_parser(commands: argparse._SubParsersAction) -> None:
    """The ``export`` command and its flags."""
    export = commands.add_parser("export", help="write a small model-only copy of a checkpoint, for sharing")
    export.add_argument("--checkpoint", required=True, metavar="PATH")
    export.add_argument("--out", required=True, metavar="PATH")
    export.add_argument("--half", action="store_true", help="store the weights in float16 (half the size)")
    export.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the copy to ``--out``, never over its source, and say how large it is."""
    checkpoint = load_checkpoint(args.checkpoint)
    out = Path(args.out)
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder; give the file name to write, e.g. {out / 'model.pt'}")
    if out.resolve() == Path(args.checkpoint).resolve():
        raise UsageError("--out must differ from --checkpoint (the export never overwrites its source)")
    try:
        save_checkpoint(checkpoint.without_training_state(half=args.half), out)
    except OSError as error:
        raise UsageError(f"cannot write {out}: {error.strerror or error}") from None
    print(f"wrote {out}: {out.stat().st_size / 1e6:.1f} MB, model only{' (float16 weights)' if args.half else ''}")
    return 0
