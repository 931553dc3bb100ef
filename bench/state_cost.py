"""What keeping window state costs at a million keys: memory against the floor, restore, throughput.

    make bench-state      # or: scripts/local-kafka with .venv/bin/python bench/state_cost.py

Three measurements, one run:

- restore: a process fills a feature store with KEYS keys (default
  1,000,000) and the sensor example's spec (4 fields, a 16-event and a
  10-second window), each key fed EVENTS_PER_KEY events 200 ms apart (the
  demo's 5 events/s per sensor, so the windows hold what they hold in the
  demo), checkpoints it to a fresh changelog topic of 8 partitions and
  reports its RSS: the process before a restart. A second, fresh process
  restores all of it as the service does (read the changelog partitions to
  their end, pick, load) and reports its RSS after the restore and the
  seconds it took; both report a digest of every key's stored form, which
  must be equal. The floor per key (``streamscore state estimate``) is
  reported beside the store's live bytes per key.
- active keys: ``streamscore run`` over backlogs of the same length whose
  events spread over KEYS keys and over 1,000 keys, in alternating rounds,
  with default settings and with the changelog off:
  ``throughput_ratio_1m_vs_1k_keys`` is the median of the default rounds'
  ratios. With default settings each run is then stopped (saving its state)
  and restarted over as many events again: the restart restores the keys
  and scores with them held, from its first batch
  (``throughput_ratio_1m_vs_1k_keys_restart``).
- changelog: ``streamscore run`` over one pre-produced backlog (1,000
  keys), default settings, with state.changelog off, on with checkpoints
  every 1 s, and on with the default 5 s, in rounds whose order rotates;
  the cost is the ratio to "off" within each round (this VM's speed drifts
  between runs).

Writes bench/results/state_cost.json (keeping the churn_* keys of
bench/state_churn.py, and with ``--parts`` the figures of the parts not run).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.throughput import CONFIG, KEYS, RESULTS, broker_with_model, measure_run, measure_starts, produce, say  # noqa: E402
from features import FeatureStore  # noqa: E402
from features.footprint import estimate  # noqa: E402
from stream.config import load_config  # noqa: E402
from stream.kafka.admin import ensure_topics  # noqa: E402
from stream.kafka.sink import PredictionSink  # noqa: E402
from stream.state.changelog import CHANGELOG_TOPIC_CONFIG, Changelog  # noqa: E402
from stream.state.heap import trim  # noqa: E402

PARTITIONS = 8
SPACING_MS = 200  # per key: the demo's 5 events/s per sensor


def rss_mb() -> float:
    """The process's resident memory now."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS in /proc/self/status")


def names(keys: int) -> list[str]:
    return [f"sensor-{k:07d}" for k in range(keys)]


def filled_store(keys: int, events_per_key: int) -> FeatureStore:
    spec = load_config(CONFIG, {}).features
    store = FeatureStore(spec)
    rng = np.random.default_rng(0)
    keys_all = names(keys)
    shards = np.arange(keys, dtype=np.int64) % PARTITIONS
    level = np.array([60.0, 101_325.0, 2.0, 45.0])
    for i in range(events_per_key):
        for start in range(0, keys, 20_000):
            chunk = keys_all[start:start + 20_000]
            times = np.full(len(chunk), 1_700_000_000_000 + i * SPACING_MS, dtype=np.int64)
            store.update_arrays(chunk, times, rng.normal(size=(len(chunk), len(spec.fields))) + level,
                                shards[start:start + len(chunk)])
        say(f"filled {i + 1}/{events_per_key} events per key") if (i + 1) % 10 == 0 else None
    return store


def digest(store: FeatureStore, keys: int) -> tuple[str, int]:
    """A digest of every key's stored form, and their bytes."""
    h, total = hashlib.sha256(), 0
    all_keys = names(keys)
    for start in range(0, keys, 50_000):
        for blob in store.export(all_keys[start:start + 50_000]):
            h.update(blob)
            total += len(blob)
    return h.hexdigest(), total


def changelog(bootstrap: str, topic: str, store: FeatureStore) -> Changelog:
    return Changelog(topic=topic, store=store, monitor=None, reader_settings={"bootstrap.servers": bootstrap},
                     timeout_s=600.0)


def phase_fill(bootstrap: str, topic: str, keys: int, events_per_key: int) -> dict[str, Any]:
    """The process before the restart: fill, checkpoint, and report its memory."""
    ensure_topics({"bootstrap.servers": bootstrap}, {topic: PARTITIONS}, {topic: CHANGELOG_TOPIC_CONFIG})
    store = filled_store(keys, events_per_key)
    progress = dict.fromkeys(range(PARTITIONS), keys * events_per_key)  # the input offset the checkpoint reflects
    sink = PredictionSink({"bootstrap.servers": bootstrap})
    started = time.monotonic()
    sent = changelog(bootstrap, topic, store).checkpoint(sink, progress)
    sink.flush()
    say(f"checkpointed {sent:,} records in {time.monotonic() - started:.1f}s")
    trim()  # as after a restore: the checkpoint's byte strings are gone
    sha, state_bytes = digest(store, keys)
    return {"rss_mb": rss_mb(), "live_bytes": store.key_bytes(names(keys)), "store_bytes": store.nbytes,
            "digest": sha, "state_bytes": state_bytes, "checkpoint_s": time.monotonic() - started}


def phase_restore(bootstrap: str, topic: str, keys: int, events_per_key: int) -> dict[str, Any]:
    """A fresh process restoring every key as the service does, and its memory after."""
    store = FeatureStore(load_config(CONFIG, {}).features)
    log = changelog(bootstrap, topic, store)
    started = time.monotonic()
    states = log.read(dict.fromkeys(range(PARTITIONS), keys * events_per_key))
    read_s = time.monotonic() - started
    log.apply_all(states)
    restore_s = time.monotonic() - started
    del states
    rss = rss_mb()
    sha, _ = digest(store, keys)
    return {"rss_mb": rss, "read_s": read_s, "restore_s": restore_s, "digest": sha,
            "live_bytes": store.key_bytes(names(keys)), "keys_restored": len(store)}


def run_phase(phase: str, bootstrap: str, topic: str, keys: int, events_per_key: int) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--phase", phase, "--topic", topic, "--keys", str(keys),
                          "--events-per-key", str(events_per_key)],
                         env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap}, stdout=subprocess.PIPE,
                         check=True, cwd=ROOT, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def restore_cost(bootstrap: str, keys: int, events_per_key: int) -> dict[str, Any]:
    topic = f"bench-state-{uuid.uuid4().hex[:8]}"
    say(f"filling a store in one process: {keys:,} keys x {events_per_key} events, then checkpointing it")
    before = run_phase("fill", bootstrap, topic, keys, events_per_key)
    say(f"RSS {before['rss_mb']:,.0f} MB before the restart; restoring in a fresh process")
    after = run_phase("restore", bootstrap, topic, keys, events_per_key)
    floor = estimate(load_config(CONFIG, {}).features, 1000.0 / SPACING_MS).floor_bytes
    return {
        "keys": keys, "events_per_key": events_per_key, "floor_bytes_per_key": floor,
        "live_bytes_per_key": round(before["live_bytes"] / keys), "live_over_floor": round(before["live_bytes"] / keys / floor, 3),
        "restored_live_bytes_per_key": round(after["live_bytes"] / keys),
        "rss_mb_before_restart": round(before["rss_mb"]), "rss_mb_after_restore": round(after["rss_mb"]),
        "rss_after_over_before": round(after["rss_mb"] / before["rss_mb"], 3),
        "restore_s": round(after["restore_s"], 2), "read_s": round(after["read_s"], 2),
        "changelog_bytes_per_key": round(before["state_bytes"] / keys), "checkpoint_s": round(before["checkpoint_s"], 2),
        "keys_restored": after["keys_restored"], "restored_identical": before["digest"] == after["digest"],
    }


def active_keys_cost(bootstrap: str, events: int, keys: int, rounds: int) -> dict[str, Any]:
    """Throughput over a backlog spread over ``keys`` keys against one over 1,000, alternating.

    With the default settings, a first run and its restart over the next
    ``events`` events; and a run with the changelog off. Over ``keys`` keys
    nearly every event changes a key no other event of its checkpoint
    interval changed, so the changelog writes a record per event, where
    over 1,000 keys it writes one per key and interval.
    """
    topics = {}
    for n in (keys, KEYS):
        topics[n] = f"bench-state-keys-{n}-{uuid.uuid4().hex[:6]}"
        say(f"pre-producing {2 * events:,} sensor events over {n:,} keys")
        produce(bootstrap, topics[n], 2 * events, keys=n)
    setups: dict[str, tuple[int, dict[str, Any]]] = {"default": (2, {}), "no_changelog": (1, {"state__changelog": "false"})}
    runs: dict[str, list[dict[str, Any]]] = {"default": [], "restart": [], "no_changelog": []}
    for i in range(rounds):
        for name, (starts, settings) in setups.items():
            eps: dict[int, list[float]] = {}
            for n in ((keys, KEYS) if i % 2 == 0 else (KEYS, keys)):
                eps[n] = [r["throughput_eps"] for r in measure_starts(bootstrap, topics[n], events, starts, **settings)]
                say(f"round {i + 1}/{rounds}, {name}: {n:>9,} keys {eps[n][0]:,.0f} events/s"
                    + (f", restarted {eps[n][1]:,.0f}" if starts > 1 else ""))
            runs[name].append(_ratio(eps[keys][0], eps[KEYS][0]))
            if starts > 1:
                runs["restart"].append(_ratio(eps[keys][1], eps[KEYS][1]))
    medians = {name: float(np.median([r["ratio"] for r in rs])) for name, rs in runs.items()}
    return {"events": events, "keys": keys, "few_keys": KEYS, "rounds": runs["default"], "median": medians["default"],
            "restart_rounds": runs["restart"], "restart_median": medians["restart"],
            "no_changelog_rounds": runs["no_changelog"], "no_changelog_median": medians["no_changelog"]}


def _ratio(many: float, few: float) -> dict[str, Any]:
    return {"many_eps": many, "few_eps": few, "ratio": round(many / few, 3)}


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


PARTS = ("restore", "active", "changelog")
RESTORE_KEYS = ("keys", "floor_bytes_per_key", "live_bytes_per_key", "rss_mb_before_restart", "rss_mb_after_restore",
                "restore_s", "changelog_bytes_per_key")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--events-per-key", type=int, default=50)
    parser.add_argument("--events", type=int, default=1_000_000, help="backlog for the changelog rounds")
    parser.add_argument("--key-events", type=int, default=2_000_000, help="backlog for the active-keys rounds")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS),
                        help="measure only these (the file keeps the others' last figures)")
    parser.add_argument("--phase", choices=("fill", "restore"), help=argparse.SUPPRESS)
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.phase:
        phase = phase_fill if args.phase == "fill" else phase_restore
        print(json.dumps(phase(os.environ["KAFKA_BOOTSTRAP_SERVERS"], args.topic, args.keys, args.events_per_key)))
        return 0
    bootstrap = broker_with_model()
    if bootstrap is None:
        return 2
    path = RESULTS / "state_cost.json"
    result = json.loads(path.read_text()) if path.exists() else {}
    ok = True
    if "restore" in args.parts:
        r = restore_cost(bootstrap, args.keys, args.events_per_key)
        result.update({k: r[k] for k in RESTORE_KEYS}, restore=r)
        print(f"{r['keys']:,} keys: {r['live_bytes_per_key']:,} live bytes per key against a floor of "
              f"{r['floor_bytes_per_key']:,} ({r['live_over_floor']}x); RSS {r['rss_mb_before_restart']:,} MB before "
              f"the restart, {r['rss_mb_after_restore']:,} MB after the restore ({r['rss_after_over_before']}x); "
              f"restore {r['restore_s']} s (read {r['read_s']} s); {r['changelog_bytes_per_key']:,} bytes per key in "
              f"the changelog; identical: {r['restored_identical']}")
        ok = r["restored_identical"] and r["keys_restored"] == r["keys"]
    if "active" in args.parts:
        active = active_keys_cost(bootstrap, args.key_events, args.keys, args.rounds)
        result.update(throughput_ratio_1m_vs_1k_keys=active["median"],
                      throughput_ratio_1m_vs_1k_keys_restart=active["restart_median"], active_keys=active)
        print(f"throughput with {args.keys:,} keys / 1,000 keys: median {active['median']:.3f} "
              f"({', '.join(str(x['ratio']) for x in active['rounds'])}); restarted with them held "
              f"{active['restart_median']:.3f} ({', '.join(str(x['ratio']) for x in active['restart_rounds'])}); "
              f"with the changelog off {active['no_changelog_median']:.3f} "
              f"({', '.join(str(x['ratio']) for x in active['no_changelog_rounds'])})")
    if "changelog" in args.parts:
        t = result["throughput"] = throughput_cost(bootstrap, args.events, args.rounds)
        for name in list(SETUPS)[1:]:
            print(f"throughput, changelog with {name} checkpoints / off: median {t[name]['median']:.3f} "
                  f"({t[name]['min']:.3f}-{t[name]['max']:.3f} over {len(t['rounds'])} rounds)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    say(f"wrote {path}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
