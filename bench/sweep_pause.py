"""How long a batch waits while the window arenas reclaim the blocks that growing keys left behind.

    .venv/bin/python bench/sweep_pause.py [--keys 300000] [--rounds 40] [--batch 1000] [--pairs 2]

Feeds the sensor example's feature spec ``--keys`` keys at 5 events/s per
key of event time, one event per key per round in batches of ``--batch``
(1,000, the default ``batch.max_size``) in a random order, so that every key grows through the ring classes together
(the ramp-up of a fleet). Each run is a fresh process, in alternating
pairs: sweeps of ``SWEEP_WORDS`` per batch (the default), and each sweep
done within one batch (how free blocks were reclaimed before: every block
in use copied at once). Prints and writes ``results/sweep_pause_KEYSxBATCH.json``
(per batch p50, p99, p99.9 and max in ms, the largest after the first
round, sweeps, RSS; medians of the pairs, and each run) and a ``.png`` of
each batch's time (the last pair). No broker.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.state_cost import rss_mb
from bench.throughput import CONFIG, RESULTS, pct
from features import FeatureStore, arena
from stream.config import load_config

EVENT_GAP_MS = 200  # 5 events/s per key
MODES = {"stepwise": arena.SWEEP_WORDS, "in_one_batch": 2**62}


def fill(keys: int, rounds: int, batch: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Each batch's seconds over ``rounds`` rounds of one event per key, and what the arenas did."""
    store = FeatureStore(load_config(CONFIG, {}).features)
    names = [f"sensor-{i:07d}" for i in range(keys)]
    rng = np.random.default_rng(0)
    seconds = []
    for r in range(rounds):
        order = rng.permutation(keys)
        for start in range(0, keys, batch):
            idx = order[start:start + batch]
            times = np.full(len(idx), 1_700_000_000_000 + r * EVENT_GAP_MS + start * EVENT_GAP_MS // keys)
            values = rng.normal(50.0, 10.0, size=(len(idx), 4))
            began = time.perf_counter()
            store.update_arrays([names[i] for i in idx], times, values)
            seconds.append(time.perf_counter() - began)
        if (r + 1) % 10 == 0:
            print(f"  round {r + 1}/{rounds}, RSS {rss_mb():,.0f} MB", file=sys.stderr, flush=True)
    arenas = [w[0].arena for w in store._windows]
    return np.array(seconds), {"sweeps_ended": sum(a.sweeps for a in arenas), "rss_mb_end": round(rss_mb()),
                               "live_mb_end": round(sum(a.live_bytes for a in arenas) / 2**20)}


def summary(seconds: np.ndarray, first_round: int) -> dict[str, float]:
    """Per-batch percentiles; the largest after the first round, whose batches create the keys."""
    ms = seconds * 1e3
    return {"p50_ms": pct(ms, 50), "p99_ms": pct(ms, 99), "p999_ms": pct(ms, 99.9), "max_ms": pct(ms, 100),
            "max_after_first_round_ms": pct(ms[first_round:], 100)}


def run_child(mode: str, args: argparse.Namespace, series: Path) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", mode, "--keys", str(args.keys), "--rounds", str(args.rounds),
           "--batch", str(args.batch), "--series", str(series)]
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--child", choices=sorted(MODES), help=argparse.SUPPRESS)
    parser.add_argument("--series", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        arena.SWEEP_WORDS = MODES[args.child]
        seconds, books = fill(args.keys, args.rounds, args.batch)
        np.save(args.series, seconds)
        print(json.dumps({**summary(seconds, -(-args.keys // args.batch)), **books}))
        return 0
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = f"sweep_pause_{args.keys}x{args.batch}"
    result: dict[str, Any] = {"keys": args.keys, "rounds": args.rounds, "batch": args.batch,
                              "sweep_words": arena.SWEEP_WORDS, "runs": {m: [] for m in MODES}}
    for pair in range(1, args.pairs + 1):
        for mode in MODES:
            print(f"pair {pair}/{args.pairs}: {mode}, {args.keys:,} keys x {args.rounds} rounds", flush=True)
            row = run_child(mode, args, RESULTS / f".sweep_{mode}.npy")
            result["runs"][mode].append(row)
            print(f"  {json.dumps(row)}", flush=True)
    for mode, rows in result["runs"].items():
        result[mode] = {k: round(float(np.median([r[k] for r in rows])), 2) for k in rows[0]}
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    plot({m: np.load(RESULTS / f".sweep_{m}.npy") for m in MODES}, args.batch, RESULTS / f"{name}.png")
    for mode in MODES:
        (RESULTS / f".sweep_{mode}.npy").unlink()
    print(json.dumps({m: result[m] for m in MODES}, indent=1))
    return 0


def plot(series: dict[str, np.ndarray], batch: int, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4))
    for name, seconds in series.items():
        ax.plot(seconds * 1e3, lw=0.6, label=name.replace("_", " "))
    ax.set_yscale("log")
    ax.set_xlabel(f"batch of {batch:,} events (the first round creates the keys)")
    ax.set_ylabel("update_arrays, ms")
    ax.set_title("Reclaiming free ring blocks: sweeps in steps against each sweep in one batch")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
