"""Where a training run stands, in one plain sentence: which baselines it beat and when, and overfitting.

Everything here is a pure function over plain data, so the Train page can call it on what it read
from a run's folder and tests can call it on made-up histories:

* ``evals``: the validation evaluations, dicts with at least ``step``, ``elapsed_s`` (seconds since
  the run started) and ``perplexity`` (validation perplexity);
* ``steps``: the training steps, dicts with at least ``step`` and ``loss`` (training loss, natural
  log, per step); a thinned-out list works too;
* ``baselines``: the :class:`lstm_core.evaluation.baselines.Baseline` list of
  :func:`lstm_core.evaluation.baselines.baseline_perplexities`.

For example: "Better than uniform guessing after 2 s, than the unigram after 15 s, than the
bigram after 40 s; not yet better than the 5-gram (perplexity 281 vs 263)."
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from lstm_core.errors import InputError

if TYPE_CHECKING:
    from lstm_core.evaluation.baselines import Baseline

DEFAULT_RISING = 3
"""Evaluations in a row with a higher validation perplexity before the run is called overfitting."""


def format_duration(seconds: float) -> str:
    """``"1 s"`` .. ``"59 s"``, then whole minutes (``"3 min"``), then ``"1 h 5 min"``; rounded half up."""
    if not math.isfinite(seconds) or seconds < 0:
        raise InputError(f"a duration must be a finite number of seconds, 0 or more, got {seconds!r}")
    if seconds < 59.5:
        return f"{max(1, math.floor(seconds + 0.5))} s"
    minutes = math.floor(seconds / 60 + 0.5)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h" if minutes == 0 else f"{hours} h {minutes} min"


def format_perplexity(perplexity: float) -> str:
    """Whole numbers with thousands separators from 100 up, one decimal below: "7,025", "263", "42.5"."""
    if math.isnan(perplexity):
        return "undefined"
    if math.isinf(perplexity):
        return "infinite"
    return f"{perplexity:,.0f}" if perplexity >= 99.95 else f"{perplexity:.1f}"


def _number(record: Mapping, key: str, what: str, index: int) -> float:
    if not isinstance(record, Mapping):
        raise InputError(f"{what} {index} must be a mapping, got {type(record).__name__}")
    value = record.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"{what} {index} needs a number under {key!r}, got {value!r}")
    return float(value)


def _evaluations(evals: Sequence[Mapping]) -> list[tuple[float, float, float]]:
    """``(step, elapsed_s, perplexity)`` of each evaluation, in step order."""
    rows = [
        (
            _number(e, "step", "evaluation", i),
            _number(e, "elapsed_s", "evaluation", i),
            _number(e, "perplexity", "evaluation", i),
        )
        for i, e in enumerate(evals)
    ]
    return sorted(rows, key=lambda row: row[0])


def _training_losses(steps: Sequence[Mapping]) -> list[tuple[float, float]]:
    return [(_number(s, "step", "step", i), _number(s, "loss", "step", i)) for i, s in enumerate(steps)]


def _mean_loss(losses: list[tuple[float, float]], after: float, upto: float) -> float | None:
    """Mean training loss over the steps in ``(after, upto]``; None if there are none."""
    inside = [loss for step, loss in losses if after < step <= upto]
    return sum(inside) / len(inside) if inside else None


def rising_evaluations(evals: Sequence[Mapping]) -> int:
    """For how many evaluations in a row, up to the latest, validation perplexity went up.

    0 when the latest evaluation is not higher than the one before it (or there is only one).
    """
    rows = _evaluations(evals)
    count = 0
    while count + 1 < len(rows) and rows[-1 - count][2] > rows[-2 - count][2]:
        count += 1
    return count


def overfitting(evals: Sequence[Mapping], steps: Sequence[Mapping], rising: int = DEFAULT_RISING) -> int:
    """How many evaluations validation perplexity has risen for while training loss fell; 0 if not overfitting.

    Precisely: let the last ``r`` evaluations each have a higher validation perplexity than the one
    before (``r`` from :func:`rising_evaluations`). The run is overfitting when ``r >= rising`` and
    the smoothed training loss fell over the same steps, where the smoothed training loss at an
    evaluation is the mean training loss of the steps since the evaluation before it (from the start
    for the first one): the value at the latest evaluation must be below the value at the evaluation
    the rise started from. If either window holds no training step there is no evidence, hence 0.
    A run whose training loss rises too is diverging or unstable, not overfitting: 0 as well.
    """
    if isinstance(rising, bool) or not isinstance(rising, int) or rising < 1:
        raise InputError(f"rising must be a whole number of evaluations, 1 or more, got {rising!r}")
    rows = _evaluations(evals)
    count = rising_evaluations(evals)
    if count < rising:
        return 0
    losses = _training_losses(steps)
    start = len(rows) - 1 - count  # the evaluation the rise started from
    before_start = rows[start - 1][0] if start > 0 else -math.inf
    at_start = _mean_loss(losses, before_start, rows[start][0])
    at_end = _mean_loss(losses, rows[-2][0], rows[-1][0])
    if at_start is None or at_end is None or not at_end < at_start:
        return 0
    return count


def standing(
    evals: Sequence[Mapping],
    steps: Sequence[Mapping],
    baselines: Sequence[Baseline],
    rising: int = DEFAULT_RISING,
) -> str:
    """One sentence on where the run stands against the baselines, with an overfitting warning.

    * Each baseline the latest evaluation is below: "than the bigram after 40 s", with the elapsed
      time of the first evaluation whose validation perplexity went below it, in the order they were
      beaten.
    * The easiest baseline the latest evaluation is not below (the one with the highest
      perplexity): "not yet better than the 5-gram (perplexity 281 vs 263)", or "no longer better
      than ..." when an earlier evaluation was below it.
    * :func:`overfitting`: "validation perplexity has risen for 3 evaluations while training loss
      falls: overfitting".

    Without any evaluation: "Not evaluated yet." Without baselines: the latest perplexity and time.
    """
    rows = _evaluations(evals)
    if not rows:
        return "Not evaluated yet."
    latest = rows[-1][2]
    beaten: list[tuple[float, float, str]] = []  # (step, -baseline perplexity, clause)
    behind: list[tuple[float, str]] = []
    for baseline in baselines:
        below = [row for row in rows if row[2] < baseline.perplexity]
        if latest < baseline.perplexity:
            step, elapsed_s, _ = below[0]
            beaten.append((step, -baseline.perplexity, f"than {baseline.phrase} after {format_duration(elapsed_s)}"))
        else:
            how = "no longer" if below else "not yet"
            figures = f"perplexity {format_perplexity(latest)} vs {format_perplexity(baseline.perplexity)}"
            behind.append((baseline.perplexity, f"{how} better than {baseline.phrase} ({figures})"))
    clauses = []
    if beaten:
        clauses.append("better " + ", ".join(clause for _, _, clause in sorted(beaten)))
    if behind:
        clauses.append(max(behind)[1])
    if not baselines:
        clauses.append(f"validation perplexity {format_perplexity(latest)} after {format_duration(rows[-1][1])}")
    count = overfitting(evals, steps, rising)
    if count:
        evaluations = "evaluation" if count == 1 else "evaluations"
        clauses.append(
            f"validation perplexity has risen for {count} {evaluations} while training loss falls: overfitting"
        )
    sentence = "; ".join(clauses)
    return sentence[0].upper() + sentence[1:] + "."
