"""Rolling windows over one key's values: the last N events, or the last T seconds of event time."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Protocol

from features.aggregates import SlidingSummary, Summary
from features.spec import WindowSpec

__all__ = ["Window", "CountWindow", "TimeWindow", "make_window"]

Reader = Callable[[SlidingSummary, Summary], float]

# How each aggregate is read off a window and its summary.
_READERS: dict[str, Reader] = {
    "mean": lambda w, s: w.shift + s.mean,
    "std": lambda w, s: s.std,
    "min": lambda w, s: s.lo,
    "max": lambda w, s: s.hi,
    "sum": lambda w, s: s.total,
    "count": lambda w, s: float(s.n),
    "last": lambda w, s: w.last,
    "delta": lambda w, s: w.last - w.first,
    "ewma": lambda w, s: s.ewma,
}


class Window(Protocol):
    """What the feature store needs of a window."""

    def update(self, ts_ms: int, x: float, out: list[float]) -> None:
        """Add the newest event, evict what fell out, append its aggregates to ``out``."""


class _Base:
    __slots__ = ("_values", "_readers")

    def __init__(self, spec: WindowSpec) -> None:
        self._values = SlidingSummary(spec.ewma_alpha)
        self._readers = tuple(_READERS[a] for a in spec.aggregates)

    def _emit(self, out: list[float]) -> None:
        values = self._values
        s = values.summary()
        for read in self._readers:
            out.append(read(values, s))

    def __len__(self) -> int:
        return len(self._values)


class CountWindow(_Base):
    """The key's last ``size`` events, the current one included."""

    __slots__ = ("_size",)

    def __init__(self, spec: WindowSpec) -> None:
        super().__init__(spec)
        assert spec.size is not None
        self._size = spec.size

    def update(self, ts_ms: int, x: float, out: list[float]) -> None:
        values = self._values
        values.push(x)
        if len(values) > self._size:
            values.pop()
        self._emit(out)


class TimeWindow(_Base):
    """The key's events within ``seconds`` of the newest event time seen for the key.

    Events leave in arrival order: the oldest-arrived event is evicted while
    its time is at or before ``max_ts - seconds``, where ``max_ts`` is the
    latest event time of the key so far. The current event always counts,
    even when it arrives late.
    """

    __slots__ = ("_span_ms", "_times", "_max_ts")

    def __init__(self, spec: WindowSpec) -> None:
        super().__init__(spec)
        assert spec.seconds is not None
        self._span_ms = spec.seconds * 1000.0
        self._times: deque[int] = deque()
        self._max_ts: int | None = None

    def update(self, ts_ms: int, x: float, out: list[float]) -> None:
        values = self._values
        times = self._times
        values.push(x)
        times.append(ts_ms)
        if self._max_ts is None or ts_ms > self._max_ts:
            self._max_ts = ts_ms
        horizon = self._max_ts - self._span_ms
        while len(times) > 1 and times[0] <= horizon:
            times.popleft()
            values.pop()
        self._emit(out)


def make_window(spec: WindowSpec) -> CountWindow | TimeWindow:
    """A fresh, empty window for ``spec``."""
    return CountWindow(spec) if spec.kind == "count" else TimeWindow(spec)
