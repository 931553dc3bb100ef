"""Per-key window state, and the feature vector of each event in arrival order."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from features.exceptions import FeatureValueError
from features.spec import FeatureSpec
from features.windows import CountWindow, TimeWindow, make_window

__all__ = ["FeatureStore"]


class FeatureStore:
    """Window state for every key seen, and the features of each new event.

    ``update`` both folds the event into its key's windows and returns the
    event's feature vector (the windows include the event itself), so an
    event's features depend only on the events of its key that arrived
    before it, never on how the stream was cut into batches.
    """

    def __init__(self, spec: FeatureSpec) -> None:
        self.spec = spec
        self._fields = spec.fields
        self._keys: dict[str, list[CountWindow | TimeWindow]] = {}

    def __len__(self) -> int:
        """Number of keys with state."""
        return len(self._keys)

    def update(self, key: str, ts_ms: int, values: Sequence[float]) -> list[float]:
        """Fold one event into ``key``'s windows and return its features.

        ``values`` holds the spec's fields in order. Raises FeatureValueError
        (and changes no state) when a value is not a finite number.
        """
        for name, v in zip(self._fields, values):
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
                raise FeatureValueError(f"field {name!r} is {v!r}, not a finite number")
        windows = self._keys.get(key)
        if windows is None:
            windows = self._keys[key] = [
                make_window(w) for _ in self._fields for w in self.spec.windows
            ]
        out: list[float] = []
        n_windows = len(self.spec.windows)
        for i, v in enumerate(values):
            x = float(v)
            for window in windows[i * n_windows : (i + 1) * n_windows]:
                window.update(ts_ms, x, out)
        return out

    def update_many(self, events: Iterable[tuple[str, int, Sequence[float]]]) -> np.ndarray:
        """Features of several events, in the order given, as an ``(n, f)`` float64 matrix."""
        rows = [self.update(key, ts, values) for key, ts, values in events]
        if not rows:
            return np.empty((0, self.spec.n_features), dtype=np.float64)
        return np.asarray(rows, dtype=np.float64)
