"""What a key's windows must hold (the floor) against what the store's arrays give it, for a spec and an event rate.

The floor of a window is what no layout can do without: the events it must
keep (their times and every field's value) plus the running summaries its
aggregates need, per field. The layout is what ``FeatureStore`` allocates
per key: rings sized for the busiest key (a count window's size + 1; a time
window's power of two at least 8 above what it holds) and, per held value, a
summary of ``N_COMPONENTS`` words for the two-stacks front.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from features.kernel import N_COMPONENTS
from features.spec import FeatureSpec, WindowSpec
from features.store import TIME_WINDOW_CAPACITY

__all__ = ["Footprint", "WindowFootprint", "estimate"]

WORD = 8  # bytes: every value, time and summary component is 8 bytes
# The summary words each aggregate needs per field, by component: what the floor counts once per window.
_NEEDS = {"mean": {"n", "sum"}, "std": {"n", "sum", "m2"}, "sum": {"sum"}, "count": {"n"}, "min": {"lo"},
          "max": {"hi"}, "last": set(), "delta": set(), "ewma": {"ewn", "ewd"}}


@dataclass(frozen=True)
class WindowFootprint:
    """One window's bytes per key."""

    name: str
    held: int  # events it keeps for a key at the rate
    floor_bytes: int
    layout_bytes: int
    ring: int  # the store's ring length for it


@dataclass(frozen=True)
class Footprint:
    """A spec's bytes per key at one event rate: the floor, and the store's layout."""

    rate_per_s: float
    windows: tuple[WindowFootprint, ...]

    @property
    def floor_bytes(self) -> int:
        return sum(w.floor_bytes for w in self.windows)

    @property
    def layout_bytes(self) -> int:
        return sum(w.layout_bytes for w in self.windows)

    @property
    def over_floor(self) -> float:
        return self.layout_bytes / self.floor_bytes


def held_events(window: WindowSpec, rate_per_s: float) -> int:
    """Events a key's window keeps once full, at ``rate_per_s`` events per second of event time."""
    if window.kind == "count":
        return int(window.size or 1)
    return max(1, math.ceil(rate_per_s * float(window.seconds or 0.0)))


def estimate(spec: FeatureSpec, rate_per_s: float) -> Footprint:
    """Bytes per key of every window of ``spec`` for keys with ``rate_per_s`` events per second."""
    fields = len(spec.fields)
    out = []
    for window in spec.windows:
        held = held_events(window, rate_per_s)
        summary_words = len(set().union(*(_NEEDS[a] for a in window.aggregates)))
        floor = WORD * (held * (1 + fields) + fields * summary_words + 1)  # times and values, summaries, newest
        if window.kind == "count":
            ring = held + 1
        else:  # a push comes before its evictions, and rings double from the smallest
            ring = TIME_WINDOW_CAPACITY
            while ring < held + 2:
                ring *= 2
        # vals, times and front per ring entry; back, shift and the 4 positions per key
        layout = WORD * (ring * (fields + 1 + fields * N_COMPONENTS) + fields * (N_COMPONENTS + 1) + 4)
        out.append(WindowFootprint(window.name, held, floor, layout, ring))
    return Footprint(rate_per_s, tuple(out))
