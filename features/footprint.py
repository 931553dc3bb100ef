"""What a key's windows must hold (the floor) against what the store gives it, for a spec and an event rate.

The floor of a window is what no layout can do without: the events it must
keep (their times and every field's value) plus the running summaries its
aggregates need, per field. The layout is what ``FeatureStore`` allocates
per key once its windows are full: a ring block sized for the key (a count
window's size + 1; a time window's size class above what it holds plus the
next event; a long ring adds its stretches' minima and maxima), and its row
of the per-key arrays (positions, ``N_SUMMARY`` summaries and the two
extreme positions per field).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from features.arena import ring_class
from features.kernel import ring_words, row_words
from features.spec import FeatureSpec, WindowSpec

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
        # a push comes before its evictions: the ring holds one more than the window
        ring = held + 1 if window.kind == "count" else int(ring_class(np.array([held + 1]))[0])
        layout = WORD * (int(ring_words(np.array([ring]), fields)[0]) + row_words(fields))
        out.append(WindowFootprint(window.name, held, floor, layout, ring))
    return Footprint(rate_per_s, tuple(out))
