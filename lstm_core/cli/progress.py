"""The training progress on a terminal: a progress bar, and a line for each evaluation and sample."""

from __future__ import annotations

import sys
from typing import Any, TextIO


class ProgressPrinter:
    """Turns trainer events into a tqdm progress bar, plus a line for each evaluation and sample.

    The bar shows only on a terminal; evaluations and samples are printed either way (to a log
    file too), and ``quiet`` keeps only the evaluations.
    """

    def __init__(self, stream: TextIO | None = None, quiet: bool = False) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self._bar: Any = None

    def _line(self, text: str) -> None:
        from tqdm import tqdm

        tqdm.write(text, file=self.stream)

    def __call__(self, event: Any) -> None:
        if event.kind == "step" and not self.quiet:
            if self._bar is None:
                from tqdm import tqdm

                self._bar = tqdm(
                    total=event.total_steps,
                    initial=event.step - 1,
                    unit="step",
                    file=self.stream,
                    disable=None,  # no bar where the output is not a terminal
                    dynamic_ncols=True,
                )
            self._bar.update(event.step - self._bar.n)
            self._bar.set_postfix_str(
                f"epoch {event.epoch + 1} loss {event.loss:.3f} {event.tokens_per_s / 1000:.1f}k words/s", refresh=False
            )
        elif event.kind == "eval":
            mark = " (best)" if event.best else ""
            self._line(
                f"step {event.step}: validation loss {event.val_loss:.4f}, perplexity {event.perplexity:.1f}{mark}"
            )
        elif event.kind == "sample" and not self.quiet:
            for text in event.samples.values():
                self._line(f"    {text}")
        elif event.kind == "end":
            self.close()
            from tqdm import tqdm

            elapsed = tqdm.format_interval(event.elapsed_s)
            self._line(f"{event.reason.replace('_', ' ')} after {event.step} steps in {elapsed}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
