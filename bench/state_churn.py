"""Keys that come and go: with state.key_ttl_s, memory and live keys level off however many keys pass through.

    make bench-state      # or: .venv/bin/python bench/state_churn.py [--keys N]

A feature store with the sensor example's spec (a 16-event and a 10-second
window) and 8 shards takes a stream in which new keys keep arriving and
never come back: every key has two events, 2 s of event time apart, and the
stream runs at 10,000 events per second of event time. With a 10 s ttl, the
keys idle past it are forgotten on a schedule (every 50,000 events, standing
in for the scorer's checkpoint interval), as the scorer does. Records RSS
and live keys as keys pass through, and plots them.

Without expiry the store would hold every key: 10 million keys at the ~9.8 KB
each the sensor spec holds per live key would be ~100 GB, so that run is not
made; the first samples, before any key could expire, show the slope.

Adds the churn_* keys to bench/results/state_cost.json (keeping the others)
and writes bench/results/state_churn.png.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.throughput import CONFIG, RESULTS, say  # noqa: E402
from features import FeatureStore  # noqa: E402
from stream.config import load_config  # noqa: E402

SHARDS = 8
EVENTS_PER_S = 10_000  # of event time
GAP_S = 2.0  # between a key's two events
TTL_S = 10.0
SWEEP_EVERY = 50_000  # events
BATCH = 10_000
SAMPLES = 50


def rss_mb() -> float:
    """The process's resident memory now (not its peak)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def churn(distinct_keys: int) -> dict[str, object]:
    spec = load_config(CONFIG, {}).features
    store = FeatureStore(spec, key_ttl_ms=int(TTL_S * 1000))
    rng = np.random.default_rng(0)
    level = np.array([60.0, 101_325.0, 2.0, 45.0])
    lag = int(GAP_S * EVENTS_PER_S)  # events between a key's first and second event
    total = 2 * distinct_keys + lag
    # Event g >= lag: even g brings key g // 2 for the first time; odd g brings back key (g - lag) // 2, whose
    # first event came `lag` events before. Before lag, only first events. After 2 * keys, only second events.
    samples: list[dict[str, float]] = []
    every = max(total // SAMPLES, BATCH)
    expired = 0
    started = time.monotonic()
    next_sample = 0
    for start in range(0, total, BATCH):
        g = np.arange(start, min(start + BATCH, total), dtype=np.int64)
        first = (g % 2 == 0) & (g // 2 < distinct_keys)
        ids = np.where(first, g // 2, (g - lag) // 2)
        keep = (ids >= 0) & (ids < distinct_keys) & (first | (g >= lag))
        g, ids = g[keep], ids[keep]
        times = 1_700_000_000_000 + g * 1000 // EVENTS_PER_S
        values = rng.normal(size=(len(g), len(spec.fields))) + level
        store.update_arrays([f"device-{k}" for k in ids.tolist()], times, values, ids % SHARDS)
        if (start // BATCH) % (SWEEP_EVERY // BATCH) == 0:
            expired += sum(len(store.expire(shard)) for shard in range(SHARDS))
        if start >= next_sample:
            next_sample += every
            seen = int(min(distinct_keys, (start + BATCH) // 2))
            samples.append({"distinct_keys": seen, "live_keys": len(store), "rss_mb": round(rss_mb(), 1),
                            "seconds": round(time.monotonic() - started, 1)})
            say(f"{seen:,} keys passed through, {len(store):,} live, RSS {rss_mb():,.0f} MB, "
                f"{time.monotonic() - started:.0f}s")
    end_rss = rss_mb()
    samples.append({"distinct_keys": distinct_keys, "live_keys": len(store), "rss_mb": round(end_rss, 1),
                    "seconds": round(time.monotonic() - started, 1)})
    # "start": once the first keys could have expired (gap + ttl of event time), the level it should hold
    settled = next(s for s in samples if s["distinct_keys"] * 2 >= (GAP_S + TTL_S) * EVENTS_PER_S * 2)
    return {
        "churn_distinct_keys": distinct_keys, "churn_events": total, "churn_ttl_s": TTL_S,
        "churn_expired": expired, "churn_rss_mb_start": settled["rss_mb"], "churn_rss_mb_end": round(end_rss, 1),
        "churn_live_keys_start": settled["live_keys"], "churn_live_keys_end": len(store),
        "churn_live_keys_max": max(s["live_keys"] for s in samples),
        "churn_seconds": round(time.monotonic() - started, 1), "churn_samples": samples,
    }


def plot(result: dict[str, object], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = result["churn_samples"]
    assert isinstance(samples, list)
    keys = [s["distinct_keys"] / 1e6 for s in samples]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot(keys, [s["rss_mb"] for s in samples], label="RSS (MB)", color="tab:blue")
    ax.set_xlabel("distinct keys passed through (millions)")
    ax.set_ylabel("RSS (MB)", color="tab:blue")
    ax.set_ylim(bottom=0)
    other = ax.twinx()
    other.plot(keys, [s["live_keys"] / 1e3 for s in samples], label="live keys", color="tab:orange")
    other.set_ylabel("live keys (thousands)", color="tab:orange")
    other.set_ylim(bottom=0)
    ax.set_title(f"Key churn with state.key_ttl_s = {TTL_S:g}: memory and live keys level off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=10_000_000, help="distinct keys that pass through")
    args = parser.parse_args(argv)
    result = churn(args.keys)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "state_cost.json"
    merged = {**(json.loads(path.read_text()) if path.exists() else {}), **result}
    path.write_text(json.dumps(merged, indent=2) + "\n")
    plot(result, RESULTS / "state_churn.png")
    print(f"churn: {args.keys:,} distinct keys, RSS {result['churn_rss_mb_start']} MB once settled -> "
          f"{result['churn_rss_mb_end']} MB at the end; live keys {result['churn_live_keys_start']:,} -> "
          f"{result['churn_live_keys_end']:,} (at most {result['churn_live_keys_max']:,}); "
          f"{result['churn_expired']:,} expired; {result['churn_seconds']} s")
    say(f"wrote {path} and {RESULTS / 'state_churn.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
