"""A run's training time across sessions, and the two ends it sets: a caller's time limit, the config's time budget."""

from __future__ import annotations

from collections.abc import Callable


class RunClock:
    """The training time of a run, counted across its sessions, with its time limit and time budget.

    A session is one :meth:`~lstm_core.training.trainer.Trainer.fit`: :meth:`start` begins one from
    the time the run had trained before (0, or what its checkpoint recorded), so both ends count the
    run's whole training time. ``limit_s`` is a cap the caller sets (the app's, or ``--time-limit``);
    ``budget_s`` is the config's ``train_minutes``, which also paces the cosine schedule and the
    weight averaging (:meth:`progress`). ``now`` reads seconds (``time.perf_counter`` in the trainer).
    """

    def __init__(
        self, now: Callable[[], float], limit_s: float | None, budget_s: float | None, elapsed_s: float = 0.0
    ) -> None:
        self.now = now
        self.limit_s = limit_s
        self.budget_s = budget_s
        self.seen_s = elapsed_s
        """The run's training time at the last look at the clock: with several ranks, rank 0's, which all agree on."""
        self.before_s = elapsed_s
        self.session_start = 0.0  # read from the clock by start(), when a session begins
        self.session_steps = 0
        self.session_tokens = 0

    def start(self, elapsed_s: float) -> None:
        """Begin a session of a run that has trained ``elapsed_s`` seconds before it."""
        self.session_start = self.now()
        self.session_steps = 0
        self.session_tokens = 0
        self.before_s = elapsed_s

    def session_s(self) -> float:
        """This session's time so far."""
        return self.now() - self.session_start

    def total_s(self) -> float:
        """The run's whole training time so far: earlier sessions plus this one."""
        return self.before_s + self.now() - self.session_start

    def limit_reached(self, total_s: float) -> bool:
        return self.limit_s is not None and total_s >= self.limit_s

    @property
    def limit_used_before(self) -> bool:
        """The run had used its time limit before this session began: it ends at once, without a step."""
        return self.limit_s is not None and self.before_s > 0 and self.limit_s <= self.before_s

    @property
    def budget_used(self) -> bool:
        return self.budget_s is not None and self.seen_s >= self.budget_s

    def progress(self) -> float | None:
        """The share of the time budget used so far; None for a run by epochs."""
        return None if self.budget_s is None else min(1.0, self.seen_s / self.budget_s)

    def eta(self, steps_left: int, session_s: float, elapsed_s: float) -> float:
        """Seconds left: ``steps_left`` at this session's pace, or less where the time budget ends first."""
        by_steps = steps_left * session_s / self.session_steps
        if self.budget_s is None:
            return by_steps
        return max(0.0, min(by_steps, self.budget_s - elapsed_s))

    def expected_steps(self, total_steps: int, step: int, eta_s: float, session_s: float) -> int:
        """The steps the run will take: ``total_steps``, or with a time budget the steps the time left
        holds at this session's pace, if fewer."""
        if self.budget_s is not None and session_s > 0:
            return min(total_steps, step + round(eta_s * self.session_steps / session_s))
        return total_steps

    def tokens_per_s(self, session_s: float) -> float:
        """This session's pace in words a second (0 before any time has passed)."""
        return self.session_tokens / session_s if session_s > 0 else 0.0
