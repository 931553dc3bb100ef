"""The model lifecycle on a live stream, measured: drift, alarm, retrain, shadow, compare, promote, recover.

On the local broker, in exactly-once mode (``bench/lifecycle.toml``):

1. version 1 is trained on the simulator's sensor events and made champion;
2. a scorer process follows the champion alias and shadows the challenger;
3. events are produced live, with each label produced ~0.5 s after its
   event, and at ``--drift-at`` the concept changes (faults show in pressure
   and humidity instead of temperature and vibration);
4. when the error detector alarms, ``streamscore train --from-topics``
   retrains on the events since the alarm and registers the result as the
   challenger; the scorer shadows it;
5. once the shadow has enough paired labels, ``models compare`` (the same
   code) decides, and ``models promote`` moves the champion alias while
   events flow;
6. afterwards every input's prediction is checked (lost, duplicated, without
   a version) and the metric is computed per phase from the topics.

Then the same backlog is scored with and without a challenger, in alternating
rounds, for ``shadow_throughput_ratio``. Writes ``bench/results/lifecycle.json``
and ``lifecycle.png``. Needs a broker: ``make lifecycle`` starts one.

    python bench/lifecycle.py [--events 160000] [--rate 2000] [--drift-at 50000]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer

from models import LocalModelStore
from schemas import load_schema
from stream.avro.codec import AvroCodec, AvroEncoder
from stream.config import load_config
from stream.kafka.admin import ensure_topics
from stream.tools.compare import compare, metric_of, plot_comparison, read_outcomes
from stream.tools.generators import sensor_events
from stream.tools.labelled import LabelledFeed
from stream.tools.simulator import produce_events
from stream.tools.topics import StreamRange, partition_ranges, read_partition, reader
from stream.tools.train import train_from_config

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
CONFIG = ROOT / "bench" / "lifecycle.toml"
LABEL_DELAY_S = 0.5
# Paired labels the shadow needs before the comparison decides.
PAIRED_LABELS = 4000


def say(text: str) -> None:
    print(f"lifecycle: {text}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> dict[str, float]:
    """The scorer's /metrics as {name{labels}: value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def first_error_alarm(bootstrap: str, topic: str, not_before_ms: int, stop: threading.Event,
                      false_alarms: list[int]) -> dict[str, Any] | None:
    """The first error-signal drift event at or after ``not_before_ms`` of event time (earlier ones are counted)."""
    codec = AvroCodec(load_schema("drift_event"))
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex, "auto.offset.reset": "earliest",
                         "isolation.level": "read_committed", "enable.auto.commit": False})
    consumer.subscribe([topic])
    try:
        while not stop.is_set():
            for msg in consumer.consume(100, timeout=0.5):
                if msg.error() is not None:
                    continue
                event = codec.decode(msg.value())
                if event["signal"] != "error":
                    continue
                if event["event_time"] < not_before_ms:
                    false_alarms.append(int(event["event_time"]))
                    continue
                return event
    finally:
        consumer.close()
    return None


def run(args: argparse.Namespace, bootstrap: str) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:8]
    topic = f"lifecycle-{run_id}"
    work = Path(tempfile.mkdtemp(prefix="streamscore-lifecycle-"))
    store_dir = work / "store"
    port = free_port()
    env = {
        **os.environ,
        "STREAMSCORE_KAFKA__BOOTSTRAP_SERVERS": bootstrap, "STREAMSCORE_KAFKA__INPUT_TOPICS": json.dumps([topic]),
        "STREAMSCORE_KAFKA__OUTPUT_TOPIC": topic + "-predictions", "STREAMSCORE_KAFKA__DEAD_LETTER_TOPIC": topic + "-dlq",
        "STREAMSCORE_KAFKA__GROUP_ID": topic + "-group", "STREAMSCORE_LABELS__TOPIC": topic + "-labels",
        "STREAMSCORE_DRIFT__TOPIC": topic + "-drift", "STREAMSCORE_MODEL__SHADOW_TOPIC": topic + "-shadow",
        "STREAMSCORE_MODEL__STORE": str(store_dir), "STREAMSCORE_METRICS__PORT": str(port),
        "STREAMSCORE_TRAINING__RATE": str(args.rate),
    }
    config = load_config(CONFIG, env)
    assert config.model.name is not None
    name = config.model.name
    say("training version 1 on the simulator's events (before the change)")
    train_from_config(config, work / "v1")
    store = LocalModelStore(store_dir)
    store.register(name, work / "v1")
    store.set_alias(name, "champion", "1")
    ensure_topics({"bootstrap.servers": bootstrap}, {topic: 4, topic + "-labels": 1})
    start_ms = int(time.time() * 1000) + 15_000  # the scorer starts before the first event
    drift_ms = start_ms + int(args.drift_at * 1000 / args.rate)
    cli = [sys.executable, "-m", "stream.cli"]
    scorer = subprocess.Popen([*cli, "run", "--config", str(CONFIG), "--max-events", str(args.events),
                               "--idle-exit-seconds", "20", "--summary-json", str(work / "summary.json")],
                              env=env, stderr=open(work / "scorer.log", "w"))  # noqa: SIM115 - closed with the process
    marks: dict[str, int] = {"concept change": drift_ms}
    timeline: dict[str, Any] = {}
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                scrape(port)
                break
            except OSError:
                if scorer.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the scorer did not start; see {work / 'scorer.log'}") from None
                time.sleep(0.5)
        wait = start_ms / 1000 - time.time()
        if wait > 0:
            time.sleep(wait)
        feed = LabelledFeed(bootstrap, topic, topic + "-labels",
                            sensor_events(args.events, 200, seed=23, rate=args.rate, start_ms=start_ms,
                                          concept_at=args.drift_at),
                            "sensor_id", args.rate, LABEL_DELAY_S, progress=say).start()
        say(f"feed started: {args.events:,} events at {args.rate:,.0f}/s, concept change at event {args.drift_at:,}")
        stop = threading.Event()
        false_alarms: list[int] = []
        alarm = first_error_alarm(bootstrap, topic + "-drift", drift_ms, stop, false_alarms)
        if alarm is None:
            raise RuntimeError("no error alarm")
        alarm_ms = int(alarm["event_time"])
        marks["error alarm"] = alarm_ms
        timeline["alarm_event_index"] = round((alarm_ms - start_ms) * args.rate / 1000)
        say(f"error alarm at event time +{(alarm_ms - start_ms) / 1000:.1f}s "
            f"(event ~{timeline['alarm_event_index']:,}); {len(false_alarms)} earlier alarms")
        # retrain on what came after the alarm, once enough of it is labelled
        train_from = alarm_ms
        while (feed.produced - timeline["alarm_event_index"]) < args.train_events:
            time.sleep(0.2)
        time.sleep(LABEL_DELAY_S * 2)
        train_to = start_ms + int(feed.produced * 1000 / args.rate)
        marks["retraining: data until"] = train_to
        say(f"retraining on event times [{train_from}, {train_to}) of the input topic")
        trained = subprocess.run([*cli, "train", "--config", str(CONFIG), "--from-topics", "--from-time", str(train_from),
                                  "--to-time", str(train_to), "--register", name, "--store", str(store_dir),
                                  "--alias", "challenger"], env=env, capture_output=True, text=True, check=True)
        summary = json.loads(trained.stdout.strip().splitlines()[-1])
        marks["challenger registered"] = start_ms + int(feed.produced * 1000 / args.rate)
        timeline["retrained_version"] = summary["version"]
        timeline["retrain_metrics"] = summary["metrics"]
        say(f"version {summary['version']} registered as challenger; held-out accuracy "
            f"{summary['metrics'].get('accuracy', float('nan')):.4f}")
        # the scorer shadows it; decide on the paired labels it reports
        metrics: dict[str, float] = {}
        while scorer.poll() is None and feed.produced < args.events:
            metrics = scrape(port)
            if metrics.get("streamscore_paired_labels", 0.0) >= PAIRED_LABELS:
                break
            time.sleep(0.5)
        paired = metrics.get("streamscore_paired_labels", 0.0)
        champion_value = challenger_value = float("nan")
        for key, value in metrics.items():
            if key.startswith("streamscore_paired_metric{") and 'role="champion"' in key:
                champion_value = value
            if key.startswith("streamscore_paired_metric{") and 'role="challenger"' in key:
                challenger_value = value
        say(f"paired on {paired:,.0f} labels: champion {champion_value:.4f}, challenger {challenger_value:.4f}")
        timeline["paired_at_promotion"] = {"labels": paired, "champion": champion_value, "challenger": challenger_value}
        if challenger_value > champion_value:
            store.promote(name)
            marks["promoted"] = start_ms + int(feed.produced * 1000 / args.rate)
            say("promoted the challenger while events flow")
        feed.join()
        scorer_rc = scorer.wait(timeout=300)
        stop.set()
    finally:
        if scorer.poll() is None:
            scorer.terminate()
            scorer.wait(30)
    if scorer_rc != 0:
        raise RuntimeError(f"the scorer exited with {scorer_rc}; see {work / 'scorer.log'}")
    log = (work / "scorer.log").read_text()
    swap_pauses = [float(line.rsplit("swap took ", 1)[1].split(" ms")[0]) for line in log.splitlines()
                   if "swap took " in line]
    return {"config": config, "work": work, "start_ms": start_ms, "drift_ms": drift_ms, "marks": marks,
            "timeline": timeline, "false_alarms": false_alarms, "swap_pauses": swap_pauses, "topic": topic,
            "store": store_dir}


def shadow_throughput(bootstrap: str, config_env: dict[str, str], store_dir: Path, name: str, events: int,
                      rounds: int) -> dict[str, Any]:
    """The same backlog scored with and without the challenger, alternating: events/s of each, and the ratio."""
    topic = f"lifecycle-backlog-{uuid.uuid4().hex[:8]}"
    ensure_topics({"bootstrap.servers": bootstrap}, {topic: 4})
    produce_events({"bootstrap.servers": bootstrap}, topic, sensor_events(events, 200, seed=3, rate=2000),
                   AvroEncoder(load_schema("sensor_reading")), "sensor_id", total=events, progress=say)
    results: dict[str, list[float]] = {"without": [], "with": []}
    shadowed: dict[str, list[Any]] = {"without": [], "with": []}
    LocalModelStore(store_dir).set_alias(name, "baseline", "1")
    LocalModelStore(store_dir).set_alias(name, "challenger", "2")
    for round_no in range(rounds):
        for mode in (("without", "with") if round_no % 2 == 0 else ("with", "without")):
            summary = Path(tempfile.mkdtemp()) / "summary.json"
            env = {**config_env, "STREAMSCORE_KAFKA__INPUT_TOPICS": json.dumps([topic]),
                   "STREAMSCORE_KAFKA__OUTPUT_TOPIC": topic + "-out", "STREAMSCORE_LABELS__TOPIC": "",
                   "STREAMSCORE_KAFKA__GROUP_ID": f"{topic}-{mode}-{round_no}", "STREAMSCORE_METRICS__ENABLED": "false",
                   "STREAMSCORE_MODEL__SHADOW_TOPIC": "", "STREAMSCORE_DRIFT__ENABLED": "false"}
            if mode == "without":
                env["STREAMSCORE_MODEL__CHALLENGER_ALIAS"] = ""
            env["STREAMSCORE_MODEL__ALIAS"] = "baseline"  # version 1; the challenger alias names version 2
            subprocess.run([sys.executable, "-m", "stream.cli", "run", "--config", str(CONFIG), "--max-events",
                            str(events), "--idle-exit-seconds", "20", "--summary-json", str(summary)],
                           env=env, check=True, capture_output=True)
            outcome = json.loads(summary.read_text())
            eps = outcome["throughput_eps"]
            results[mode].append(eps)
            shadowed[mode].append(outcome.get("shadow", {}))
            say(f"backlog round {round_no + 1}/{rounds}, challenger {mode}: {eps:,.0f} events/s "
                f"{outcome.get('shadow', '')}")
    with_, without = statistics.median(results["with"]), statistics.median(results["without"])
    return {"events": events, "rounds": rounds, "eps_with_challenger": results["with"],
            "eps_without_challenger": results["without"], "ratio": with_ / without,
            "shadow_counts_with_challenger": shadowed["with"]}


def outcomes(found: dict[str, Any], bootstrap: str) -> dict[str, Any]:
    """Lost, duplicated and version-less predictions, and the metric per phase, from the topics."""
    config, drift_ms = found["config"], found["drift_ms"]
    champion, challenger, truth = read_outcomes(config)
    output = read_all(bootstrap, config.kafka.output_topic)
    inputs = read_all(bootstrap, config.kafka.input_topics[0])
    seen = collections.Counter(f"{p['source_topic']}/{p['source_partition']}/{p['source_offset']}"
                               for p in (AvroCodec(config.output_schema).decode(v) for _, _, v in output))
    events = {f"{config.kafka.input_topics[0]}/{p}/{o}" for p, o, _ in inputs}
    promoted = found["marks"].get("promoted")

    def metric(outcomes: dict[str, Any], keep: Any) -> tuple[float, int]:
        chosen = [e for e, o in outcomes.items() if e in truth and keep(o)]
        return metric_of([outcomes[e] for e in chosen], [truth[e] for e in chosen]), len(chosen)

    before, n_before = metric(champion, lambda o: o.event_time < drift_ms)
    # after the change, before promotion: the champion and the challenger on the same labelled events
    common = {e for e in challenger if e in champion and e in truth and champion[e].event_time >= drift_ms
              and (promoted is None or champion[e].event_time < promoted)}
    champ_after, n_common = metric({e: champion[e] for e in common}, lambda o: True)
    chall_after, _ = metric({e: challenger[e] for e in common}, lambda o: True)
    champion_v1_after, n_v1_after = metric(champion, lambda o: o.event_time >= drift_ms and o.version == "1")
    after_promotion, n_after = metric(champion, lambda o: promoted is not None and o.event_time >= promoted
                                      and o.version != "1")
    plot_comparison(champion, challenger, truth, RESULTS / "lifecycle.png", marks=found["marks"])
    table = compare(champion, challenger, truth)
    say("models compare over the whole run:\n" + table.table())
    return {
        "lost": len(events - set(seen)),
        "duplicates": sum(n - 1 for n in seen.values() if n > 1),
        "predictions_without_version": sum(1 for o in champion.values() if not o.version),
        "champion_metric_before_drift": before, "labels_before_drift": n_before,
        "champion_metric_after_drift": champ_after, "challenger_metric_after_drift": chall_after,
        "labels_after_drift_compared": n_common,
        "champion_v1_metric_after_drift_all": champion_v1_after, "labels_v1_after_drift": n_v1_after,
        "metric_after_promotion": after_promotion, "labels_after_promotion": n_after,
        "inputs": len(events), "predictions": sum(seen.values()),
        "compare": {"rows": table.rows, "paired": table.paired},
    }


def read_all(bootstrap: str, topic: str) -> list[tuple[int, int, bytes]]:
    """(partition, offset, value) of every committed record of ``topic``."""
    consumer = reader(bootstrap, {})
    try:
        return [(tp.partition, offset, value) for tp, start, end in partition_ranges(consumer, topic, StreamRange())
                for offset, value in read_partition(consumer, tp, start, end, progress=False)]
    finally:
        consumer.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=160_000)
    parser.add_argument("--rate", type=float, default=2000.0)
    parser.add_argument("--drift-at", type=int, default=50_000)
    parser.add_argument("--train-events", type=int, default=24_000,
                        help="events after the alarm to retrain on")
    parser.add_argument("--backlog", type=int, default=200_000, help="events of the shadow throughput backlog")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        print("set KAFKA_BOOTSTRAP_SERVERS or run through scripts/local-kafka with", file=sys.stderr)
        return 2
    found = run(args, bootstrap)
    measured = outcomes(found, bootstrap)
    start_ms = found["start_ms"]
    env = {**os.environ, "STREAMSCORE_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
           "STREAMSCORE_MODEL__STORE": str(found["store"]), "STREAMSCORE_KAFKA__DEAD_LETTER_TOPIC": "lifecycle-dlq"}
    say(f"shadow cost: {args.backlog:,} events, {args.rounds} rounds with and without the challenger")
    throughput = shadow_throughput(bootstrap, env, found["store"], found["config"].model.name, args.backlog,
                                   args.rounds)
    timeline = found["timeline"]
    result = {
        "events": args.events, "rate": args.rate, "drift_at": args.drift_at, "metric_name": "accuracy",
        "alarm_delay_events": timeline["alarm_event_index"] - args.drift_at,
        "false_alarms_before_drift": len(found["false_alarms"]),
        **{k: measured[k] for k in ("champion_metric_before_drift", "champion_metric_after_drift",
                                    "challenger_metric_after_drift", "metric_after_promotion", "lost",
                                    "duplicates", "predictions_without_version")},
        "swap_pause_ms": max(found["swap_pauses"]) if found["swap_pauses"] else None,
        "swap_pauses_ms": found["swap_pauses"],
        "shadow_throughput_ratio": throughput["ratio"],
        "guarantee": found["config"].processing.guarantee,
        "marks_s": {k: round((v - start_ms) / 1000, 2) for k, v in found["marks"].items()},
        "timeline": timeline, "detail": measured, "shadow_throughput": throughput,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "lifecycle.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    shutil.rmtree(found["work"], ignore_errors=True)
    for key in ("alarm_delay_events", "champion_metric_before_drift", "champion_metric_after_drift",
                "challenger_metric_after_drift", "metric_after_promotion", "swap_pause_ms", "lost", "duplicates",
                "predictions_without_version", "shadow_throughput_ratio"):
        print(f"{key:32s} {result[key]}")
    print(f"wrote {RESULTS / 'lifecycle.json'} and {RESULTS / 'lifecycle.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
