"""Natural batching against waiting to fill, on a backlog: throughput and mean batch size of each setting.

Produces a backlog of demo sensor events once, then scores it from the
start with fresh consumer groups, alternating ``batch.max_wait_ms`` 50 and 0,
in this process (drift and changelog on). Both should fill every batch to
``batch.max_size`` on a backlog. Latency at a live load, where the two
differ, comes from ``bench/latency_slices.py`` with
``STREAMSCORE_BATCH__MAX_WAIT_MS`` set to each value.

    scripts/local-kafka with .venv/bin/python bench/batching.py [--events 200000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from pathlib import Path

from schemas import load_schema
from stream.avro.codec import AvroEncoder
from stream.config import load_config
from stream.kafka.admin import ensure_topics
from stream.runtime.wiring import build_service
from stream.tools.generators import sensor_events
from stream.tools.simulator import produce_events
from stream.tools.train import train_from_config

ROOT = Path(__file__).resolve().parents[1]
WAITS = ("50", "0")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        print("set KAFKA_BOOTSTRAP_SERVERS or run through scripts/local-kafka with", file=sys.stderr)
        return 2
    topic = f"bench-batching-{uuid.uuid4().hex[:6]}"
    model_dir = ROOT / "artifacts" / "sensor-model"
    base = {"STREAMSCORE_KAFKA__BOOTSTRAP_SERVERS": bootstrap, "STREAMSCORE_KAFKA__INPUT_TOPICS": json.dumps([topic]),
            "STREAMSCORE_KAFKA__OUTPUT_TOPIC": topic + "-out", "STREAMSCORE_DRIFT__TOPIC": topic + "-drift",
            "STREAMSCORE_METRICS__ENABLED": "false", "STREAMSCORE_MODEL__PATH": str(model_dir),
            "STREAMSCORE_LOG_LEVEL": "WARNING"}
    if not (model_dir / "manifest.json").exists():
        print("training the demo model", file=sys.stderr)
        train_from_config(load_config(ROOT / "examples" / "sensor.toml", base), model_dir)
    ensure_topics({"bootstrap.servers": bootstrap}, {topic: 8})
    produce_events({"bootstrap.servers": bootstrap}, topic, sensor_events(args.events, 1000, seed=1, rate=5000),
                   AvroEncoder(load_schema("sensor_reading")), "sensor_id", total=args.events)
    for round_no in range(args.rounds):
        for wait in WAITS:
            env = {**base, "STREAMSCORE_KAFKA__GROUP_ID": f"{topic}-{wait}-{round_no}",
                   "STREAMSCORE_BATCH__MAX_WAIT_MS": wait}
            service = build_service(load_config(ROOT / "examples" / "sensor.toml", env))
            summary = service.run(max_events=args.events, idle_exit_seconds=20).summary()
            print(f"round {round_no + 1}/{args.rounds}, batch.max_wait_ms={wait}: "
                  f"{summary['throughput_eps']:,.0f} events/s, mean batch {summary['mean_batch_size']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
