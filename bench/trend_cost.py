"""What min and max cost on values that only rise: the worst case for finding a leaving minimum's successor.

    .venv/bin/python bench/trend_cost.py

One key, one field, a count window of 100, 1,000 and 10,000 events with
min, max and mean, fed 60,000 rising values in batches of 500. Every event
evicts the window's minimum, so every event looks for its successor.
Prints microseconds per event (no broker, no result file).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from features import FeatureSpec, FeatureStore, WindowSpec

EVENTS = 60_000
BATCH = 500


def per_event_us(size: int) -> float:
    spec = FeatureSpec(fields=("x",), windows=(WindowSpec("count", size=size, aggregates=("min", "max", "mean")),))
    store = FeatureStore(spec)
    values = np.arange(EVENTS, dtype=np.float64)[:, None]
    times = np.arange(EVENTS, dtype=np.int64)
    store.update_arrays(["k"] * 10, times[:10], values[:10])  # compiled and warm
    started = time.perf_counter()
    for i in range(10, EVENTS, BATCH):
        store.update_arrays(["k"] * len(times[i:i + BATCH]), times[i:i + BATCH], values[i:i + BATCH])
    return (time.perf_counter() - started) / (EVENTS - 10) * 1e6


def main() -> int:
    for size in (100, 1_000, 10_000):
        print(f"count window of {size:>6,}: rising values {per_event_us(size):.2f} us/event", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
