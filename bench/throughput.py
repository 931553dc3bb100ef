"""Throughput and latency of the scorer against a per-event loop and a consume-and-decode ceiling.

One run measures, on the same broker and the same pre-produced backlog of
demo sensor events (1,000 keys, 8 partitions, the sensor example's 40 window
features, HistGradientBoosting with 100 iterations):

- the ceiling: consume and decode only;
- a naive per-event loop: poll one, decode, features, one-row predict_proba, produce;
- streamscore with its default settings (the example config, drift on);
- throughput against batch.max_size;
- end-to-end latency p50/p99 at offered loads produced live by a second process,
  next to the same feed's arrival age at a plain consumer (the floor); each
  reader starts on fresh topics, then is restarted on them three times, and the
  restarts are measured.

Each measurement runs in a child process, so CPU time and peak RSS are its
own. Ratios are taken within the run: this VM's speed drifts between runs.

    make bench          # or: scripts/local-kafka with .venv/bin/python bench/throughput.py
    python bench/throughput.py --events 200000 --naive-events 20000 --quick   # a smaller run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from confluent_kafka.admin import AdminClient

from stream.tools.chaos.processes import scorer_environ

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
CONFIG = ROOT / "examples" / "sensor.toml"
MODEL = ROOT / "artifacts" / "sensor-model"
KEYS = 1000
PARTITIONS = 8
LOADS = (1000, 5000, 20000, 50000)
# A live run offers WARMUP_SECONDS of load, then LOAD_SECONDS that are
# measured. The warm-up's latencies are reported on their own: on a fresh
# topic the feed itself is slow at first (with no scorer at all, events of
# its first quarter second reached a plain consumer up to 73-101 ms old,
# against a p99 of 13-30 ms afterwards; bench/README.md).
WARMUP_SECONDS = 2
LOAD_SECONDS = 15
# Each live run starts its reader twice on the same topics: first on the
# fresh topics for FIRST_START_SECONDS of load, then again (the scorer a
# restart: it restores its state and resumes at its committed offsets) for
# the warm-up and the measured seconds. A fresh topic's first writes stall
# the broker now and then during its first 200 ms (the feed alone too, most
# on this VM's disk; bench/README.md, "A restart, not a fresh topic"), and a
# scorer restarts far more often than its topics are new. The first start's
# stop checkpoints every state partition, so the restart restores from a
# changelog in use and reads no input again. The first start's p99 is
# reported on its own.
FIRST_START_SECONDS = 3
# Each live reader is restarted this many times after its first start, and
# each restart is offered the warm-up and the measured seconds. Percentiles
# pool the restarts' events; whether the warm-up was the slowest 2 s is
# decided per restart and reported as the median of the restarts. One stall
# anywhere on this VM (the load's producer, the broker and the scorer share
# two cores) decides a 2 s p99, so the median needs enough restarts that two
# stalled warm-ups do not decide it (bench/README.md, "Five restarts per load").
RESTARTS = 5
BATCH_SIZES = (1, 10, 100, 1000, 2000, 5000)
# Issue 18's bound on the whole-run p99 (warm-up included) at 20,000 events/s.
WHOLE_RUN_TARGET_MS = 100
# The backlog is produced as fast as possible, with event times spaced as a
# 5,000 events/s stream: 5 events per key per second, as in the live runs and
# in the model's training data (1,000/s over 200 keys), so each key's 10 s
# window holds ~50 events. With live times (1,000,000 events produced in
# ~13 s) each key held ~800, and the window state doubled to 2 GB during the
# run, 2.1 s of its 12.5 s (bench/README.md).
BACKLOG_EVENT_RATE = 5000.0
# The ceiling, the naive loop and streamscore take turns this many times (the
# naive loop over a third of its events each time) and each row pools its
# rounds: this VM's speed swings by 20-40% within minutes, and a ratio of two
# single runs minutes apart swung with it (56x to 81x in one afternoon).
ROUNDS = 3


def say(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


def env_for(bootstrap: str, topic: str, group: str, **settings: Any) -> dict[str, str]:
    """The environment of a scorer of ``topic`` with the demo model."""
    return scorer_environ(bootstrap, topic, group, MODEL, **settings)


def broker_with_model() -> str | None:
    """KAFKA_BOOTSTRAP_SERVERS, once the demo model is trained (if it was not); None, said why, without it."""
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        say("set KAFKA_BOOTSTRAP_SERVERS or run through scripts/local-kafka with")
        return None
    subprocess.run(streamscore("train", "--config", str(CONFIG), "--out", str(MODEL), "--if-needed"),
                   check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return bootstrap


def child(args: list[str], env: dict[str, str]) -> tuple[dict[str, Any], float, float]:
    """Run a child, return its JSON summary (last stdout line), and its own CPU seconds and peak RSS in MB."""
    with tempfile.TemporaryFile(mode="w+") as err:
        proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=err, text=True, cwd=ROOT)
        assert proc.stdout is not None
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own resource use
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"{args[:4]} failed:\n{err.read()[-3000:]}")
    return json.loads(out.strip().splitlines()[-1]), usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024.0


def streamscore(*args: str) -> list[str]:
    return [sys.executable, "-m", "stream.cli", *args]


def produce(bootstrap: str, topic: str, count: int, rate: float = 0.0, seed: int = 1,
            event_rate: float | None = None, keys: int = KEYS) -> None:
    """``count`` events at ``rate``/s (0: as fast as possible), with live event times, or with
    ``event_rate`` synthetic ones spaced as for that many events/s and ending now."""
    times = ["--event-time", "synthetic", "--event-rate", str(event_rate),
             "--start-ms", str(int(time.time() * 1000 - count * 1000 / event_rate))] if event_rate else []
    proc = subprocess.run(
        streamscore("simulate", "--config", str(CONFIG), "--topic", topic, "--count", str(count), "--rate", str(rate),
                    "--keys", str(keys), "--seed", str(seed), "--partitions", str(PARTITIONS), *times),
        env=env_for(bootstrap, topic, "unused"), cwd=ROOT, stdout=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RuntimeError("simulate failed")


def measure_run(bootstrap: str, topic: str, events: int, **settings: Any) -> dict[str, Any]:
    """streamscore run over the backlog, from the start, in a child."""
    return measure_starts(bootstrap, topic, events, 1, **settings)[0]


def measure_starts(bootstrap: str, topic: str, events: int, starts: int, **settings: Any) -> list[dict[str, Any]]:
    """``starts`` runs of streamscore in one new group, children one after the other, ``events`` events each.

    Each run after the first is a restart: it restores the state the one
    before saved at its stop and goes on from its committed offsets; its
    throughput counts from its first batch, after the restore. The group's
    state changelog topic is deleted after them: the broker's log cleaner
    would otherwise compact it during the runs that follow (a run over a
    million keys writes about a gigabyte of state), slowing them.
    """
    group = f"{topic}-{uuid.uuid4().hex[:6]}"
    runs = []
    try:
        for _ in range(starts):
            summary, cpu, rss = child(
                streamscore("run", "--config", str(CONFIG), "--max-events", str(events), "--idle-exit-seconds", "30"),
                env_for(bootstrap, topic, group, **settings))
            runs.append({**summary, "cpu_s": cpu, "peak_rss_mb": rss})
    finally:
        delete_topics(bootstrap, [f"{group}-state"])
    return runs


def delete_topics(bootstrap: str, topics: list[str]) -> None:
    """Delete these topics where they exist, and wait for it."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = set(admin.list_topics(timeout=30).topics)
    gone = [t for t in topics if t in existing]
    if gone:
        for future in admin.delete_topics(gone, operation_timeout=30).values():
            future.result()


def measure_latency(bootstrap: str, load: int) -> dict[str, Any]:
    """Start the scorer on fresh topics, then restart it on them RESTARTS times, offering `load` events/s live."""
    def scorer(topic: str, count: int, tmp: Path) -> tuple[list[str], dict[str, str]]:
        return (streamscore("run", "--config", str(CONFIG), "--max-events", str(count), "--idle-exit-seconds", "20",
                            "--summary-json", str(tmp / "summary.json"), "--latencies", str(tmp / "latencies.f64")),
                env_for(bootstrap, topic, topic, log_level="INFO"))

    def latencies(run: LiveReader) -> np.ndarray:
        return np.fromfile(run.folder / "latencies.f64", dtype=np.float64)

    with live_run(bootstrap, load, "live", scorer) as (first, restarts):
        batches = [json.loads((r.folder / "summary.json").read_text())["mean_batch_size"] for r in restarts]
        runs = [latencies(r) for r in restarts]
        first_start = latencies(first)
    per = max(1, load // 2)  # p99 over each half second, for the latency-over-time panel (the first restart)
    return {
        "events": sum(len(r) - load * WARMUP_SECONDS for r in runs), "mean_batch_size": round(float(np.mean(batches)), 1),
        **after_warmup(runs, load), "p99_first_start_ms": pct(first_start, 99),
        "p99_over_time_ms": [pct(runs[0][i:i + per], 99) for i in range(0, len(runs[0]), per)],
    }


def measure_feed(bootstrap: str, load: int) -> dict[str, Any]:
    """The same live feed read by a plain consumer: how old events are when they arrive, after the warm-up."""
    def reader(topic: str, count: int, tmp: Path) -> tuple[list[str], dict[str, str]]:
        return [sys.executable, str(ROOT / "bench" / "loops.py"), "feed", topic, str(count)], env_for(bootstrap, topic, "x")

    def ages(run: LiveReader) -> np.ndarray:
        return np.asarray(json.loads(run.stdout.strip().splitlines()[-1])["ages_ms"])

    with live_run(bootstrap, load, "feed", reader) as (first, restarts):
        return {**after_warmup([ages(r) for r in restarts], load), "p99_first_start_ms": pct(ages(first), 99)}


def after_warmup(runs: list[np.ndarray], load: int) -> dict[str, Any]:
    """Over the restarts: p50, p99 and p99.9 after the warm-up, and the warm-up's p99 against the slowest stretch after it.

    Values are in acknowledgement (or arrival) order, which is offer order
    but for events of one batch, so each run's warm-up is its first
    ``load * WARMUP_SECONDS`` values. Percentiles pool the runs. Each run's
    measured seconds are cut into stretches as long as the warm-up, and the
    largest of their p99s says whether its first seconds were the slowest
    (one stall weighs more in the p99 of 2 s than in that of 15 s); those two
    figures are the medians of the runs, and are also given per run.
    """
    warmup = load * WARMUP_SECONDS
    after = np.concatenate([r[warmup:] for r in runs])
    warmups = [pct(r[:warmup], 99) for r in runs]
    slowest = [max(pct(r[i:i + warmup], 99) for i in range(warmup, len(r) - warmup + 1, warmup)) for r in runs]
    return {"p50_ms": pct(after, 50), "p99_ms": pct(after, 99), "p999_ms": pct(after, 99.9),
            "p99_warmup_ms": round(float(np.median(warmups)), 1),
            "p99_slowest_stretch_after_ms": round(float(np.median(slowest)), 1),
            "p99_warmup_per_restart_ms": warmups, "p99_slowest_stretch_after_per_restart_ms": slowest,
            "p99_whole_run_ms": pct(np.concatenate(runs), 99)}


@dataclass(frozen=True)
class LiveReader:
    """One start of a live run's reader: its folder (files live until the run's block ends) and its stdout."""

    folder: Path
    stdout: str


@contextmanager
def live_run(bootstrap: str, load: int, name: str,
             command: Callable[[str, int, Path], tuple[list[str], dict[str, str]]]
             ) -> Iterator[tuple[LiveReader, list[LiveReader]]]:
    """Start a reader of fresh topics for FIRST_START_SECONDS of `load` events/s, then restart it RESTARTS times.

    ``command(topic, count, tmp)`` gives the reader's arguments and
    environment for ``count`` events; it must log "assigned" once it has its
    partitions, and resume where its last start stopped. Yields the first
    start and the restarts, each offered the warm-up and the measured seconds.
    """
    topic = f"bench-{name}-{load}-{uuid.uuid4().hex[:6]}"
    produce(bootstrap, topic, 0)
    with tempfile.TemporaryDirectory() as folder:
        starts = []
        for i, seconds in enumerate((FIRST_START_SECONDS, *[WARMUP_SECONDS + LOAD_SECONDS] * RESTARTS)):
            tmp = Path(folder) / str(i)
            tmp.mkdir()
            count = load * seconds
            args, env = command(topic, count, tmp)
            log_path = tmp / "reader.log"
            with log_path.open("w") as log:
                reader = subprocess.Popen(args, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=log, text=True)
                wait_for_line(log_path, "assigned")
                produce(bootstrap, topic, count, rate=load, seed=load)  # the same sensors every start
                out, _ = reader.communicate(timeout=600)
            if reader.returncode != 0:
                raise RuntimeError(f"{args[:4]} failed:\n{log_path.read_text()[-3000:]}")
            starts.append(LiveReader(tmp, out))
        yield starts[0], starts[1:]


def wait_for_line(path: Path, text: str, timeout_s: float = 60.0) -> None:
    """Until a child's log says ``text`` (it has its partitions); RuntimeError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while text not in path.read_text():
        if time.monotonic() > deadline:
            raise RuntimeError(f"no '{text}' in {path} after {timeout_s:.0f}s:\n{path.read_text()[-2000:]}")
        time.sleep(0.2)


def pct(values: np.ndarray, q: float) -> float:
    return round(float(np.percentile(values, q)), 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--naive-events", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="fewer batch sizes and loads")
    parser.add_argument("--replot", action="store_true", help="redraw the PNG from results/latest.json only")
    args = parser.parse_args(argv)
    if args.replot:
        saved = json.loads((RESULTS / "latest.json").read_text())
        plot(saved["batch_size_sweep"], {int(k): v for k, v in saved["latency"].items()}, RESULTS / "throughput.png")
        return 0
    bootstrap = broker_with_model()
    if bootstrap is None:
        return 2
    RESULTS.mkdir(parents=True, exist_ok=True)
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    say(f"pre-producing {args.events:,} sensor events to {topic}")
    started = time.monotonic()
    produce(bootstrap, topic, args.events, event_rate=BACKLOG_EVENT_RATE)
    say(f"produced in {time.monotonic() - started:.0f}s")

    rounds: dict[str, list[dict[str, Any]]] = {"ceiling": [], "naive": [], "streamscore": []}
    naive_per_round = -(-args.naive_events // ROUNDS)
    for r in range(1, ROUNDS + 1):
        for mode, n, what in (("ceiling", args.events, "consume and decode only"),
                              ("naive", naive_per_round, "naive per-event loop")):
            say(f"round {r}/{ROUNDS}: {what} over {n:,} events")
            summary, cpu, rss = child([sys.executable, str(ROOT / "bench" / "loops.py"), mode, topic, str(n)],
                                      env_for(bootstrap, topic, "x"))
            rounds[mode].append({**summary, "cpu_s": cpu, "peak_rss_mb": rss})
        say(f"round {r}/{ROUNDS}: streamscore, default settings, over {args.events:,} events")
        run = measure_run(bootstrap, topic, args.events)
        rounds["streamscore"].append({"events": run["events_in"], "seconds": run["elapsed_s"],
                                      "eps": run["throughput_eps"], "cpu_s": run["cpu_s"],
                                      "peak_rss_mb": run["peak_rss_mb"], "mean_batch_size": run["mean_batch_size"],
                                      "model_seconds": run["model_seconds"]})
    rows = {name: pooled(runs) for name, runs in rounds.items()}

    sweep = []
    for size in (BATCH_SIZES[::2] if args.quick else BATCH_SIZES):
        n = min(args.events, max(2000, size * 200), 200_000)
        say(f"batch.max_size={size} over {n:,} events")
        r = measure_run(bootstrap, topic, n, batch__max_size=size)
        sweep.append({"max_size": size, "events": n, "eps": r["throughput_eps"], "mean_batch_size": r["mean_batch_size"]})

    latency = {}
    for load in (LOADS[:2] if args.quick else LOADS):
        say(f"live load {load:,} events/s: {FIRST_START_SECONDS} s on fresh topics, then {RESTARTS} restarts, each "
            f"with {WARMUP_SECONDS} s warm-up and {LOAD_SECONDS} s measured; the feed alone, then streamscore")
        feed = measure_feed(bootstrap, load)
        latency[load] = {**measure_latency(bootstrap, load), "feed": feed}

    result = report(rows, sweep, latency, args)
    (RESULTS / "latest.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(sweep, latency, RESULTS / "throughput.png")
    say(f"wrote {RESULTS / 'latest.json'} and {RESULTS / 'throughput.png'}")
    return 0


def pooled(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from a measurement's rounds: events and seconds summed (eps over all of them), the largest peak RSS."""
    events, seconds = sum(r["events"] for r in runs), sum(r["seconds"] for r in runs)
    return {"events": events, "seconds": seconds, "eps": events / seconds, "cpu_s": sum(r["cpu_s"] for r in runs),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in runs), "rounds": runs}


def report(rows: dict[str, dict[str, Any]], sweep: list[dict[str, Any]], latency: dict[int, dict[str, Any]],
           args: argparse.Namespace) -> dict[str, Any]:
    print(f"{'':13s} {'events':>10s} {'events/s':>10s} {'us/event':>9s} {'CPU s/1M':>9s} {'peak RSS MB':>12s}")
    for name, r in rows.items():
        eps = r["eps"] or 0.0
        print(f"{name:13s} {r['events']:>10,} {eps:>10,.0f} {1e6 / eps if eps else 0:>9.1f} "
              f"{r['cpu_s'] / r['events'] * 1e6:>9.1f} {r['peak_rss_mb']:>12.0f}")
    s, n, c = rows["streamscore"]["eps"], rows["naive"]["eps"], rows["ceiling"]["eps"]
    per_round = {other: [round(a["eps"] / b["eps"], 3) for a, b in zip(rows["streamscore"]["rounds"], rows[other]["rounds"])]
                 for other in ("naive", "ceiling")}
    print(f"streamscore / naive   = {s / n:.1f}x (rounds: {', '.join(f'{x:.1f}x' for x in per_round['naive'])})")
    print(f"streamscore / ceiling = {s / c:.3f} (rounds: {', '.join(f'{x:.3f}' for x in per_round['ceiling'])})")
    print(f"streamscore vs 100,000 events/s: {s / 100_000:.2f}")
    print(f"latency over {RESTARTS} restarts, each {LOAD_SECONDS} s after a {WARMUP_SECONDS} s warm-up; the feed "
          "alone = arrival age at a plain consumer; warm-up and slowest stretch: median of the restarts [each]")
    for load, v in latency.items():
        f = v["feed"]
        print(f"offered {load:>6,} events/s: p50 {v['p50_ms']} ms, p99 {v['p99_ms']} ms, p99.9 {v['p999_ms']} ms, "
              f"mean batch {v['mean_batch_size']}; the feed alone p50 {f['p50_ms']} ms, p99 {f['p99_ms']} ms, "
              f"p99.9 {f['p999_ms']} ms; warm-up p99 {v['p99_warmup_ms']} ms {v['p99_warmup_per_restart_ms']} (feed "
              f"alone {f['p99_warmup_ms']} ms), slowest {WARMUP_SECONDS} s after it "
              f"{v['p99_slowest_stretch_after_ms']} ms {v['p99_slowest_stretch_after_per_restart_ms']} (feed alone "
              f"{f['p99_slowest_stretch_after_ms']} ms), "
              f"whole run {v['p99_whole_run_ms']} ms (feed alone {f['p99_whole_run_ms']} ms); the first start, "
              f"on fresh topics, p99 {v['p99_first_start_ms']} ms (feed alone {f['p99_first_start_ms']} ms)")
    return {
        "ceiling_eps": c, "naive_eps": n, "streamscore_eps": s,
        "streamscore_over_naive": s / n, "streamscore_over_ceiling": s / c, "ratios_per_round": per_round,
        "rounds": ROUNDS, "backlog_event_rate": BACKLOG_EVENT_RATE,
        "p50_ms": {str(k): v["p50_ms"] for k, v in latency.items()},
        "p99_ms": {str(k): v["p99_ms"] for k, v in latency.items()},
        "p999_ms": {str(k): v["p999_ms"] for k, v in latency.items()},
        "p99_whole_run_ms": {str(k): v["p99_whole_run_ms"] for k, v in latency.items()},
        "feed_p50_ms": {str(k): v["feed"]["p50_ms"] for k, v in latency.items()},
        "feed_p99_ms": {str(k): v["feed"]["p99_ms"] for k, v in latency.items()},
        "feed_p999_ms": {str(k): v["feed"]["p999_ms"] for k, v in latency.items()},
        "feed_p99_whole_run_ms": {str(k): v["feed"]["p99_whole_run_ms"] for k, v in latency.items()},
        "p99_warmup_ms": {str(k): v["p99_warmup_ms"] for k, v in latency.items()},
        "p99_slowest_stretch_after_ms": {str(k): v["p99_slowest_stretch_after_ms"] for k, v in latency.items()},
        "p99_first_start_ms": {str(k): v["p99_first_start_ms"] for k, v in latency.items()},
        "feed_p99_first_start_ms": {str(k): v["feed"]["p99_first_start_ms"] for k, v in latency.items()},
        "warmup_seconds": WARMUP_SECONDS, "measured_seconds": LOAD_SECONDS, "restarts": RESTARTS,
        "first_start_seconds": FIRST_START_SECONDS,
        "peak_rss_mb": rows["streamscore"]["peak_rss_mb"],
        "rows": rows, "batch_size_sweep": sweep, "latency": {str(k): v for k, v in latency.items()},
        "events": args.events, "naive_events": args.naive_events,
    }


def plot(sweep: list[dict[str, Any]], latency: dict[int, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right, over_time) = plt.subplots(1, 3, figsize=(18, 4.5))
    sizes = [r["max_size"] for r in sweep]
    left.plot(sizes, [r["eps"] for r in sweep], "o-", label="events/s (backlog)")
    left.set_xscale("log")
    left.set_xlabel("batch.max_size")
    left.set_ylabel("events/s")
    left.set_title("Throughput on a backlog: batches fill to max_size")
    ax2 = left.twinx()
    ax2.plot(sizes, [r["mean_batch_size"] for r in sweep], "s--", color="tab:orange", label="mean batch size")
    ax2.set_yscale("log")
    ax2.set_ylabel("mean batch size", color="tab:orange")
    loads = sorted(latency)
    right.plot(loads, [latency[k]["p99_ms"] for k in loads], "o-", label="p99")
    right.plot(loads, [latency[k]["p50_ms"] for k in loads], "s-", label="p50")
    right.plot(loads, [latency[k]["p99_whole_run_ms"] for k in loads], "^:", color="tab:purple",
               label=f"p99 with the {WARMUP_SECONDS} s warm-up")
    right.plot(loads, [latency[k]["p999_ms"] for k in loads], "d-", color="tab:brown", label="p99.9")
    if all("p99_first_start_ms" in latency[k] for k in loads):
        right.plot(loads, [latency[k]["p99_first_start_ms"] for k in loads], "x:", color="tab:olive",
                   label=f"p99 of the first start, on fresh topics ({FIRST_START_SECONDS} s)")
    right.plot(loads, [latency[k]["feed"]["p99_ms"] for k in loads], "v--", color="tab:grey",
               label="p99 arrival age, the feed alone")
    right.plot(loads, [latency[k]["feed"]["p50_ms"] for k in loads], "<--", color="silver",
               label="p50 arrival age, the feed alone")
    for k in loads:
        right.annotate(f"batch {latency[k]['mean_batch_size']:.0f}", (k, latency[k]["p99_ms"]),
                       textcoords="offset points", xytext=(4, 6), fontsize=8)
    if 5000 in latency:
        target = latency[5000]["feed"]["p99_ms"] + 10
        right.plot([5000], [target], "x", color="tab:red", markersize=10,
                   label=f"p99 target at 5,000/s: the feed's + 10 ms ({target:.0f} ms)")
    right.axhline(WHOLE_RUN_TARGET_MS, color="tab:red", linestyle="--",
                  label=f"whole-run p99 target at 20,000/s ({WHOLE_RUN_TARGET_MS} ms)")
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("offered load, events/s")
    right.set_ylabel("end-to-end latency, ms")
    right.set_title(f"Latency under live load: {RESTARTS} restarts, {LOAD_SECONDS} s after a {WARMUP_SECONDS} s warm-up")
    right.legend(fontsize=8)
    for k in loads:
        series = latency[k].get("p99_over_time_ms") or []
        over_time.plot([0.5 * (i + 1) for i in range(len(series))], series, label=f"{k:,} events/s")
    over_time.axhline(WHOLE_RUN_TARGET_MS, color="tab:red", linestyle="--", label=f"{WHOLE_RUN_TARGET_MS} ms")
    over_time.axvspan(0, WARMUP_SECONDS, color="grey", alpha=0.15, label="warm-up (not in p99)")
    over_time.set_yscale("log")
    over_time.set_xlabel(f"seconds into the run (events in ack order, {WARMUP_SECONDS + LOAD_SECONDS} s offered)")
    over_time.set_ylabel("p99 per half second, ms")
    over_time.set_title("Latency over a live run (the first restart)")
    over_time.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
