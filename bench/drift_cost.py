"""Throughput of the scorer with the default drift monitoring on, against the same run with it off.

Pre-produces a backlog of demo sensor events once, then scores it from the
start with fresh consumer groups, alternating drift off and on, and prints
the ratio of the medians (measured in the same run: the machine is noisy).
Needs a broker: KAFKA_BOOTSTRAP_SERVERS, or run it through
``scripts/local-kafka with`` (``make bench-drift-cost`` does).

    python bench/drift_cost.py [--events 100000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from features import FeatureStore
from models import BatchScorer, ModelArtifact
from models.drift import DriftMonitor
from schemas import load_schema
from stream.avro.codec import AvroCodec, AvroEncoder
from stream.config import load_config
from stream.kafka.admin import ensure_topics
from stream.pipeline.processor import BatchProcessor
from stream.pipeline.quality import QualityTracker
from stream.runtime.wiring import build_service
from stream.tools.generators import sensor_events
from stream.tools.simulator import produce_events
from stream.tools.train import train_from_config

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        print("set KAFKA_BOOTSTRAP_SERVERS or run through scripts/local-kafka with", file=sys.stderr)
        return 2
    run_id = uuid.uuid4().hex[:8]
    topic = f"bench-drift-{run_id}"
    model_dir = ROOT / "artifacts" / "sensor-model"
    base_env = {"STREAMSCORE_KAFKA__BOOTSTRAP_SERVERS": bootstrap, "STREAMSCORE_MODEL__PATH": str(model_dir),
                "STREAMSCORE_KAFKA__INPUT_TOPICS": json.dumps([topic]),
                "STREAMSCORE_KAFKA__OUTPUT_TOPIC": topic + "-out", "STREAMSCORE_KAFKA__DEAD_LETTER_TOPIC": topic + "-dlq",
                "STREAMSCORE_DRIFT__TOPIC": topic + "-drift", "STREAMSCORE_METRICS__ENABLED": "false"}
    config = load_config(ROOT / "examples" / "sensor.toml", base_env)
    if not (model_dir / "manifest.json").exists():
        print("training the demo model", file=sys.stderr)
        train_from_config(config, model_dir)
    ensure_topics({"bootstrap.servers": bootstrap}, {topic: 8})
    produce_events({"bootstrap.servers": bootstrap}, topic, sensor_events(args.events, 1000, seed=1),
                   AvroEncoder(load_schema("sensor_reading")), "sensor_id", total=args.events)
    results: dict[str, list[float]] = {"off": [], "on": []}
    for round_no in range(args.rounds):
        for mode in ("off", "on"):
            env = {**base_env, "STREAMSCORE_DRIFT__ENABLED": "true" if mode == "on" else "false",
                   "STREAMSCORE_KAFKA__GROUP_ID": f"{topic}-{mode}-{round_no}"}
            service = build_service(load_config(ROOT / "examples" / "sensor.toml", env))
            started = time.monotonic()
            stats = service.run(max_events=args.events, idle_exit_seconds=30)
            eps = stats.consumed / (time.monotonic() - started)
            results[mode].append(eps)
            print(f"round {round_no + 1}/{args.rounds} drift {mode:3s}: {eps:,.0f} events/s "
                  f"({stats.drift_alarms} alarms)", file=sys.stderr, flush=True)
    off, on = statistics.median(results["off"]), statistics.median(results["on"])
    cpu = processing_cost(config, min(args.events, 50_000), args.rounds)
    summary = {"events": args.events, "rounds": args.rounds, "eps_drift_off": results["off"],
               "eps_drift_on": results["on"], "median_off": off, "median_on": on, "ratio_on_over_off": on / off,
               "signals": [s.label for s in config.drift.signals], "in_process": cpu}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "drift_cost.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"end to end, throughput with default drift monitoring / without: {on / off:.3f} "
          f"(median {on:,.0f} vs {off:,.0f} events/s over {args.rounds} rounds)")
    print(f"in process (decode, features, model, drift; no broker): {cpu['ratio_on_over_off']:.3f} "
          f"({cpu['us_per_event_on']:.1f} vs {cpu['us_per_event_off']:.1f} us per event)")
    return 0


@dataclass
class _Message:
    """A consumed message as the processor reads it."""

    _value: bytes
    _offset: int
    _partition: int
    _key: bytes
    _topic: str = "bench"

    def topic(self) -> str: return self._topic
    def partition(self) -> int: return self._partition
    def offset(self) -> int: return self._offset
    def key(self) -> bytes: return self._key
    def value(self) -> bytes: return self._value
    def headers(self) -> list: return []


def processing_cost(config, events: int, rounds: int) -> dict:
    """The batch processor alone over the same messages, drift on and off: the cost without broker noise.

    The two processors take turns batch by batch (alternating which goes
    first), so both see the same machine conditions; this VM's speed drifts
    by 10% or more between runs a minute apart.
    """
    enc = AvroEncoder(load_schema("sensor_reading"))
    records = [r for r, _ in sensor_events(events, 1000, seed=2)]
    messages = [_Message(enc.encode(r), i // 8, i % 8, r["sensor_id"].encode()) for i, r in enumerate(records)]
    artifact = ModelArtifact.load(Path(config.model.path), config.features)
    seconds = {"off": 0.0, "on": 0.0}
    size = config.batch.max_size
    for _ in range(rounds):
        monitor = DriftMonitor(signals=config.drift.signals, model_name=artifact.name, model_version=artifact.version, input_fields=config.features.fields,
                               feature_names=config.features.feature_names, reference=artifact.manifest.get("reference"))
        processors = {
            mode: BatchProcessor(
                codec=AvroCodec(config.reader_schema), store=FeatureStore(config.features), scorer=BatchScorer(artifact),
                encoder=AvroEncoder(config.output_schema), key_field=config.codec.key_field, time_field=config.codec.time_field,
                quality=QualityTracker(monitor, artifact.version) if mode == "on" else None,
            )
            for mode in ("off", "on")
        }
        for n, i in enumerate(range(0, events, size)):
            batch = messages[i:i + size]
            for mode in (("off", "on") if n % 2 == 0 else ("on", "off")):
                started = time.perf_counter()
                processors[mode].process(batch)
                seconds[mode] += time.perf_counter() - started
    total = events * rounds
    return {"events": events, "rounds": rounds, "seconds_off": seconds["off"], "seconds_on": seconds["on"],
            "us_per_event_off": seconds["off"] / total * 1e6, "us_per_event_on": seconds["on"] / total * 1e6,
            "ratio_on_over_off": seconds["off"] / seconds["on"]}


if __name__ == "__main__":
    sys.exit(main())
