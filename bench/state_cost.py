"""What keeping window state in a changelog costs: restore time, size and memory, and throughput.

    make bench-state      # or: scripts/local-kafka with .venv/bin/python bench/state_cost.py

Two measurements, one run:

- restore: a feature store with KEYS keys and the sensor example's spec
  (4 fields, a 16-event and a 10-second window), each key fed
  EVENTS_PER_KEY events 200 ms apart (the demo's 5 events/s per sensor, so
  the windows hold what they hold in the demo), is checkpointed to a fresh
  changelog topic of 8 partitions; then a fresh store restores all of it as
  the service does (read the changelog partitions to their end, pick, load).
  Reports the bytes per key in the changelog, the read and load seconds, the
  restored store's array memory and the process's peak RSS, and checks that
  every restored key's stored form equals the original's.
- throughput: `streamscore run` over one pre-produced backlog (1,000 keys),
  default settings, with state.changelog off, on with checkpoints every 1 s,
  and on with the default 5 s, in rounds whose order rotates;
  the cost is the ratio to "off" within each round (this VM's speed drifts
  between runs).

Writes bench/results/state_cost.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.throughput import CONFIG, RESULTS, broker_with_model, measure_run, produce, say  # noqa: E402
from features import FeatureStore  # noqa: E402
from stream.config import load_config  # noqa: E402
from stream.kafka.admin import ensure_topics  # noqa: E402
from stream.kafka.sink import PredictionSink  # noqa: E402
from stream.state.changelog import CHANGELOG_TOPIC_CONFIG, Changelog  # noqa: E402

PARTITIONS = 8
SPACING_MS = 200  # per key: the demo's 5 events/s per sensor


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def filled_store(keys: int, events_per_key: int) -> FeatureStore:
    spec = load_config(CONFIG, {}).features
    store = FeatureStore(spec)
    rng = np.random.default_rng(0)
    names = [f"sensor-{k:06d}" for k in range(keys)]
    shards = np.arange(keys, dtype=np.int64) % PARTITIONS
    level = np.array([60.0, 101_325.0, 2.0, 45.0])
    for i in range(events_per_key):
        for start in range(0, keys, 20_000):
            chunk = names[start:start + 20_000]
            times = np.full(len(chunk), 1_700_000_000_000 + i * SPACING_MS, dtype=np.int64)
            store.update_arrays(chunk, times, rng.normal(size=(len(chunk), len(spec.fields))) + level,
                                shards[start:start + len(chunk)])
        say(f"filled {i + 1}/{events_per_key} events per key") if (i + 1) % 10 == 0 else None
    return store


def restore_cost(bootstrap: str, keys: int, events_per_key: int) -> dict[str, Any]:
    topic = f"bench-state-{uuid.uuid4().hex[:8]}"
    ensure_topics({"bootstrap.servers": bootstrap}, {topic: PARTITIONS}, {topic: CHANGELOG_TOPIC_CONFIG})
    say(f"filling a store: {keys:,} keys x {events_per_key} events")
    original = filled_store(keys, events_per_key)
    offset = keys * events_per_key  # the input offset the checkpoint reflects (any value)
    progress = dict.fromkeys(range(PARTITIONS), offset)
    sink = PredictionSink({"bootstrap.servers": bootstrap})
    started = time.monotonic()
    sent = Changelog(topic=topic, store=original, monitor=None, reader_settings={"bootstrap.servers": bootstrap}, timeout_s=600.0).checkpoint(sink, progress)
    sink.flush()
    write_s = time.monotonic() - started
    names = [f"sensor-{k:06d}" for k in range(keys)]
    stored = original.export(names)
    state_bytes = sum(len(b) for b in stored)
    say(f"checkpointed {sent:,} records ({state_bytes / 2**20:.0f} MB) in {write_s:.1f}s; restoring")

    rss_before = peak_rss_mb()
    restored = FeatureStore(original.spec)
    changelog = Changelog(topic=topic, store=restored, monitor=None, reader_settings={"bootstrap.servers": bootstrap}, timeout_s=600.0)
    started = time.monotonic()
    states = changelog.read(progress)
    read_s = time.monotonic() - started
    started = time.monotonic()
    changelog.apply_all(states)
    load_s = time.monotonic() - started
    identical = restored.export(names) == stored
    return {
        "keys": keys, "events_per_key": events_per_key, "records": sent,
        "changelog_mb": round(state_bytes / 2**20, 1), "bytes_per_key": round(state_bytes / keys),
        "checkpoint_s": round(write_s, 2), "read_s": round(read_s, 2), "load_s": round(load_s, 2),
        "restore_s": round(read_s + load_s, 2), "restored_store_mb": round(restored.nbytes / 2**20, 1),
        "peak_rss_mb_before_restore": round(rss_before), "peak_rss_mb": round(peak_rss_mb()),
        "restored_identical": identical,
    }


# Throughput runs: the changelog off, on with 1 s checkpoints, and on with the default 5 s.
SETUPS: dict[str, dict[str, Any]] = {
    "off": {"state__changelog": "false"},
    "1s": {"state__checkpoint_interval_ms": 1000},
    "5s": {},
}


def throughput_cost(bootstrap: str, events: int, rounds: int) -> dict[str, Any]:
    topic = f"bench-state-tp-{uuid.uuid4().hex[:8]}"
    say(f"pre-producing {events:,} sensor events")
    produce(bootstrap, topic, events)
    names = list(SETUPS)
    runs = []
    for i in range(rounds):
        eps = {}
        for name in names[i % len(names):] + names[:i % len(names)]:  # each setup goes first once in a while
            eps[name] = measure_run(bootstrap, topic, events, **SETUPS[name])["throughput_eps"]
            say(f"round {i + 1}/{rounds}: changelog {name:>3s} {eps[name]:,.0f} events/s")
        runs.append({**{f"{n}_eps": eps[n] for n in names},
                     **{f"{n}_vs_off": round(eps[n] / eps["off"], 3) for n in names if n != "off"}})
    summary: dict[str, Any] = {"events": events, "rounds": runs}
    for name in names[1:]:
        ratios = [r[f"{name}_vs_off"] for r in runs]
        summary[name] = {"median": float(np.median(ratios)), "min": min(ratios), "max": max(ratios)}
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--events-per-key", type=int, default=50)
    parser.add_argument("--events", type=int, default=1_000_000, help="backlog for the throughput rounds")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    bootstrap = broker_with_model()
    if bootstrap is None:
        return 2
    result = {"throughput": throughput_cost(bootstrap, args.events, args.rounds),
              "restore": restore_cost(bootstrap, args.keys, args.events_per_key)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "state_cost.json").write_text(json.dumps(result, indent=2) + "\n")
    r, t = result["restore"], result["throughput"]
    print(f"restore of {r['keys']:,} keys: {r['restore_s']} s (read {r['read_s']} s, load {r['load_s']} s), "
          f"{r['bytes_per_key']} bytes per key in the changelog, {r['restored_store_mb']} MB of window arrays, "
          f"peak RSS {r['peak_rss_mb']} MB, identical: {r['restored_identical']}")
    for name in list(SETUPS)[1:]:
        print(f"throughput, changelog with {name} checkpoints / off: median {t[name]['median']:.3f} "
              f"({t[name]['min']:.3f}-{t[name]['max']:.3f} over {len(t['rounds'])} rounds)")
    say(f"wrote {RESULTS / 'state_cost.json'}")
    return 0 if r["restored_identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
