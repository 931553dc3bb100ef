"""Window state memory: peak RSS of the feature store with many keys and the demo feature spec.

Feeds EVENTS_PER_KEY events to each of KEYS keys (the sensor example's spec:
4 fields, a 16-event and a 10-second window) at the demo's event-time rate,
in batches of 1,000, and prints the process's peak RSS before and after.

    python bench/memory.py [--keys 100000] [--events-per-key 20]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

from features import FeatureStore
from stream.config import load_config

ROOT = Path(__file__).resolve().parents[1]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--events-per-key", type=int, default=20)
    parser.add_argument("--rate", type=float, default=1000.0, help="events per second of event time")
    args = parser.parse_args(argv)
    spec = load_config(ROOT / "examples" / "sensor.toml", {}).features
    store = FeatureStore(spec)
    store.update("warm-up", 0, [1.0] * len(spec.fields))  # compile the kernel before measuring
    before = peak_rss_mb()
    rng = np.random.default_rng(0)
    n = args.keys * args.events_per_key
    names = np.array([f"sensor-{k:06d}" for k in range(args.keys)], dtype=object)
    started = time.monotonic()
    for start in range(0, n, 1000):
        size = min(1000, n - start)
        keys = names[rng.integers(0, args.keys, size)].tolist()
        times = (1_700_000_000_000 + (np.arange(start, start + size) * 1000.0 / args.rate)).astype(np.int64)
        values = rng.normal(size=(size, len(spec.fields))) + np.array([60.0, 101_325.0, 2.0, 45.0])
        store.update_arrays(keys, times, values)
    after = peak_rss_mb()
    result = {"keys": len(store), "events": n, "seconds": round(time.monotonic() - started, 1),
              "peak_rss_mb_before": round(before), "peak_rss_mb_after": round(after),
              "window_state_mb": round(after - before), "bytes_per_key": round((after - before) * 2**20 / len(store))}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
