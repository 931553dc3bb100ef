"""Sliding-window aggregation in O(1) amortised time without subtracting evicted values.

A window's summary is a monoid (an associative ``combine`` of two summaries),
kept with the two-stacks scheme: new values are folded into one running
summary (the back); evictions pop from a stack of suffix summaries (the
front), rebuilt from the back only when the front runs empty. Each value is
combined a bounded number of times, and nothing is ever "removed" from a
running sum, so there is no drift. Mean and variance come from Chan et al.'s
pairwise update over values shifted by a reference value of the window
(re-taken whenever the front is rebuilt, so it follows the level of the
data): for values around 1e6 with a spread of 0.01 the deviations are then
exact, and a constant window has a variance of exactly 0.
"""

from __future__ import annotations

import math
from typing import NamedTuple

__all__ = ["Summary", "SlidingSummary"]


class Summary(NamedTuple):
    """Aggregates of a run of consecutive values, oldest first."""

    n: int
    mean: float  # mean of (x - shift), the window's reference value
    m2: float  # sum of squared deviations from the mean
    total: float
    lo: float
    hi: float
    ew_num: float  # sum of w_k * x_k, newest w = 1
    ew_den: float  # sum of w_k
    decay: float  # (1 - alpha) ** n: how much this run discounts older values

    @property
    def std(self) -> float:
        if self.lo == self.hi:
            return 0.0
        return math.sqrt(self.m2 / self.n) if self.m2 > 0.0 else 0.0

    @property
    def ewma(self) -> float:
        return self.ew_num / self.ew_den


def single(x: float, shift: float, keep: float) -> Summary:
    """The summary of one value; ``keep`` is 1 - alpha of the window's ewma."""
    return Summary(1, x - shift, 0.0, x, x, x, x, 1.0, keep)


def combine(a: Summary, b: Summary) -> Summary:
    """Summary of run ``a`` followed by run ``b`` (``b`` is newer)."""
    n = a.n + b.n
    delta = b.mean - a.mean
    nb_over_n = b.n / n
    return Summary(
        n,
        a.mean + delta * nb_over_n,
        a.m2 + b.m2 + delta * delta * a.n * nb_over_n,
        a.total + b.total,
        a.lo if a.lo <= b.lo else b.lo,
        a.hi if a.hi >= b.hi else b.hi,
        a.ew_num * b.decay + b.ew_num,
        a.ew_den * b.decay + b.ew_den,
        a.decay * b.decay,
    )


class SlidingSummary:
    """A FIFO of floats whose summary is readable after every push or pop."""

    __slots__ = ("_keep", "_shift", "_front", "_back", "_back_summary")

    def __init__(self, ewma_alpha: float) -> None:
        self._keep = 1.0 - ewma_alpha
        self._shift = 0.0  # every summary held is of (x - shift)
        # Front: (value, summary of this value and every newer front value);
        # the oldest value is last, so pop() is list.pop().
        self._front: list[tuple[float, Summary]] = []
        self._back: list[float] = []  # oldest first
        self._back_summary: Summary | None = None

    def __len__(self) -> int:
        return len(self._front) + len(self._back)

    def push(self, x: float) -> None:
        """Append the newest value."""
        if not self._back and not self._front:
            self._shift = x
        s = single(x, self._shift, self._keep)
        self._back.append(x)
        self._back_summary = s if self._back_summary is None else combine(self._back_summary, s)

    def pop(self) -> float:
        """Remove and return the oldest value."""
        if not self._front:
            self._flip()
        return self._front.pop()[0]

    @property
    def first(self) -> float:
        """The oldest value."""
        return self._front[-1][0] if self._front else self._back[0]

    @property
    def last(self) -> float:
        """The newest value."""
        return self._back[-1] if self._back else self._front[0][0]

    @property
    def shift(self) -> float:
        """The reference value that ``Summary.mean`` is relative to."""
        return self._shift

    def summary(self) -> Summary:
        """Aggregates over every value held; the window must not be empty."""
        back = self._back_summary
        if not self._front:
            assert back is not None, "summary() of an empty window"
            return back
        front = self._front[-1][1]
        return front if back is None else combine(front, back)

    def _flip(self) -> None:
        # The front is empty: every summary is rebuilt here, so the shift can
        # move to the newest value, where the data is now.
        keep = self._keep
        front = self._front
        shift = self._shift = self._back[-1]
        acc: Summary | None = None
        for x in reversed(self._back):
            s = single(x, shift, keep)
            acc = s if acc is None else combine(s, acc)
            front.append((x, acc))
        self._back = []
        self._back_summary = None
