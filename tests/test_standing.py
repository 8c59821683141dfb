"""The one-sentence standing of a run against the baselines, on constructed histories."""

from __future__ import annotations

import math

import pytest

from lstm_core.errors import InputError
from lstm_core.evaluation.baselines import Baseline
from lstm_core.evaluation.standing import format_duration, format_perplexity, overfitting, rising_evaluations, standing

UNIFORM = Baseline(0, "uniform", "uniform", 7025.0, 41_314)
UNIGRAM = Baseline(1, "unigram", "unigram", 522.8, 41_314)
BIGRAM = Baseline(2, "bigram", "bigram (Kneser-Ney)", 283.3, 41_314)
FIVE_GRAM = Baseline(5, "5-gram", "5-gram (Kneser-Ney)", 263.1, 41_314)
BASELINES = [UNIFORM, UNIGRAM, BIGRAM, FIVE_GRAM]


def evals(*rows: tuple[int, float, float]) -> list[dict]:
    """Evaluations from ``(step, elapsed_s, perplexity)``."""
    return [
        {"step": step, "elapsed_s": elapsed, "perplexity": ppl, "val_loss": math.log(ppl)}
        for step, elapsed, ppl in rows
    ]


def steps(losses_by_step: dict[int, float]) -> list[dict]:
    return [{"step": step, "loss": loss} for step, loss in losses_by_step.items()]


def falling_losses(last_step: int, start: float = 7.0, per_step: float = 0.01) -> list[dict]:
    return steps({step: start - per_step * step for step in range(1, last_step + 1)})


def test_durations_read_plainly() -> None:
    assert [format_duration(s) for s in (0, 0.2, 1.4, 40, 59.4)] == ["1 s", "1 s", "1 s", "40 s", "59 s"]
    assert [format_duration(s) for s in (59.5, 90, 149, 180, 3569)] == ["1 min", "2 min", "2 min", "3 min", "59 min"]
    assert [format_duration(s) for s in (3570, 3600, 3900, 7260)] == ["1 h", "1 h", "1 h 5 min", "2 h 1 min"]
    for bad in (-1, math.inf, math.nan):
        with pytest.raises(InputError, match="duration"):
            format_duration(bad)


def test_perplexities_read_plainly() -> None:
    assert [format_perplexity(p) for p in (7025.0, 412.4, 99.96, 42.46, math.inf)] == [
        "7,025",
        "412",
        "100",
        "42.5",
        "infinite",
    ]


def test_the_baselines_beaten_and_when() -> None:
    history = evals((100, 10, 900.0), (400, 40, 280.0), (1000, 100, 270.0), (1800, 180, 250.0))
    sentence = standing(history, falling_losses(1800), [BIGRAM, FIVE_GRAM])
    assert sentence == "Better than the bigram after 40 s, than the 5-gram after 3 min."
    # The clauses follow the order in which the baselines were beaten, not the order given.
    assert standing(history, falling_losses(1800), [FIVE_GRAM, BIGRAM]) == sentence


def test_the_next_baseline_not_yet_beaten() -> None:
    history = evals((100, 5, 8000.0), (200, 12, 412.0))
    assert standing(history, [], [UNIGRAM]) == "Better than the unigram after 12 s."
    assert standing(history, [], [Baseline(1, "unigram", "unigram", 380.0, 10)]) == (
        "Not yet better than the unigram (perplexity 412 vs 380)."
    )
    # Only the easiest baseline not yet beaten is named.
    assert standing(history, [], BASELINES) == (
        "Better than uniform guessing after 12 s, than the unigram after 12 s; "
        "not yet better than the bigram (perplexity 412 vs 283)."
    )
    assert standing(evals((10, 1, 9000.0)), [], BASELINES) == (
        "Not yet better than uniform guessing (perplexity 9,000 vs 7,025)."
    )


def test_a_baseline_beaten_and_lost_again() -> None:
    history = evals((100, 30, 400.0), (200, 50, 270.0), (300, 90, 262.0), (400, 120, 275.0))
    assert standing(history, [], [BIGRAM, FIVE_GRAM]) == (
        "Better than the bigram after 50 s; no longer better than the 5-gram (perplexity 275 vs 263)."
    )


def test_evaluations_are_taken_in_step_order() -> None:
    history = evals((400, 40, 280.0), (100, 10, 900.0))
    assert standing(history, [], [BIGRAM]) == "Better than the bigram after 40 s."


def test_without_evaluations_or_baselines() -> None:
    assert standing([], falling_losses(50), BASELINES) == "Not evaluated yet."
    assert standing(evals((100, 200, 300.0)), [], []) == "Validation perplexity 300 after 3 min."


# ---- overfitting -----------------------------------------------------------------------------

# Validation perplexity falls to 150 at step 400, then rises at steps 500, 600 and 700.
RISING = evals(
    (100, 10, 400.0), (200, 20, 250.0), (300, 30, 180.0), (400, 40, 150.0),
    (500, 50, 155.0), (600, 60, 162.0), (700, 70, 171.0),
)  # fmt: skip


def test_overfitting_is_named_when_validation_rises_while_training_falls() -> None:
    assert rising_evaluations(RISING) == 3
    assert overfitting(RISING, falling_losses(700)) == 3
    assert standing(RISING, falling_losses(700), [BIGRAM, FIVE_GRAM]) == (
        "Better than the bigram after 20 s, than the 5-gram after 20 s; "
        "validation perplexity has risen for 3 evaluations while training loss falls: overfitting."
    )


def test_overfitting_needs_enough_rises() -> None:
    two_rises = RISING[:-1]
    assert rising_evaluations(two_rises) == 2
    assert overfitting(two_rises, falling_losses(600)) == 0
    assert "overfitting" not in standing(two_rises, falling_losses(600), [BIGRAM])
    # The number of rises is a parameter.
    assert overfitting(two_rises, falling_losses(600), rising=2) == 2
    assert "risen for 2 evaluations" in standing(two_rises, falling_losses(600), [BIGRAM], rising=2)
    # A flat evaluation breaks the run of rises.
    flat = [*RISING[:5], {**RISING[5], "perplexity": 155.0}, RISING[6]]
    assert rising_evaluations(flat) == 1
    assert overfitting(flat, falling_losses(700), rising=1) == 1
    assert standing(flat, falling_losses(700), [], rising=1).endswith(
        "risen for 1 evaluation while training loss falls: overfitting."
    )
    with pytest.raises(InputError, match="rising"):
        overfitting(RISING, falling_losses(700), rising=0)


def test_no_overfitting_when_training_loss_rises_too() -> None:
    rising_losses = steps({step: 4.0 + 0.001 * step for step in range(1, 701)})
    assert overfitting(RISING, rising_losses) == 0
    assert "overfitting" not in standing(RISING, rising_losses, [BIGRAM])
    # Falling for a while, then rising over the steps where validation rose: not overfitting either.
    turning = steps({step: 7.0 - 0.01 * min(step, 400) + 0.002 * max(step - 400, 0) for step in range(1, 701)})
    assert overfitting(RISING, turning) == 0


def test_training_loss_is_compared_over_the_same_steps() -> None:
    # Training loss only fell before the rise began (steps up to 400) and is flat at the end: the
    # window before the rise's first evaluation (steps 301..400) and the last (601..700) are equal.
    flat_after = steps({step: 7.0 - 0.01 * min(step, 300) for step in range(1, 701)})
    assert overfitting(RISING, flat_after) == 0
    # Noisy per-step losses are smoothed: each window's mean falls although single steps go up.
    noisy = steps({step: 7.0 - 0.005 * step + (0.5 if step % 2 else -0.5) for step in range(1, 701)})
    assert overfitting(RISING, noisy) == 3
    # No training step logged in a window: no evidence, no warning.
    assert overfitting(RISING, steps({step: 1.0 for step in range(1, 500)})) == 0
    assert overfitting(RISING, []) == 0


def test_the_rise_may_start_at_the_first_evaluation() -> None:
    history = evals((100, 10, 200.0), (200, 20, 210.0), (300, 30, 220.0), (400, 40, 230.0))
    assert overfitting(history, falling_losses(400)) == 3


def test_malformed_histories_are_refused() -> None:
    with pytest.raises(InputError, match="evaluation 0 needs a number under 'elapsed_s'"):
        standing([{"step": 1, "perplexity": 300.0}], [], [BIGRAM])
    with pytest.raises(InputError, match="evaluation 1 must be a mapping"):
        standing([{"step": 1, "elapsed_s": 1.0, "perplexity": 300.0}, 5], [], [BIGRAM])  # type: ignore[list-item]
    with pytest.raises(InputError, match="step 0 needs a number under 'loss'"):
        overfitting(RISING, [{"step": 1, "loss": "low"}])
