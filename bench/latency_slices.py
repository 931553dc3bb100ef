"""Latency under live load, slice by slice: where in a run the p99 tail comes from.

Starts the scorer in this process on a fresh topic, offers LOAD events/s
for SECONDS through `streamscore simulate` in a second process, then
splits the per-event latencies (in arrival order) into 20 slices and
prints each slice's p99 next to the whole run's p50 and p99.

    scripts/local-kafka with .venv/bin/python bench/latency_slices.py [LOAD] [SECONDS]
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stream.config import load_config  # noqa: E402
from stream.kafka.admin import ensure_topics  # noqa: E402
from stream.runtime.wiring import build_service  # noqa: E402

SLICES = 20


def main() -> int:
    load = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    seconds = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        print("set KAFKA_BOOTSTRAP_SERVERS or run through scripts/local-kafka with", file=sys.stderr)
        return 2
    topic = f"slices-{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "STREAMSCORE_KAFKA__INPUT_TOPICS": f'["{topic}"]',
           "STREAMSCORE_KAFKA__OUTPUT_TOPIC": topic + "-out", "STREAMSCORE_KAFKA__GROUP_ID": topic,
           "STREAMSCORE_DRIFT__TOPIC": topic + "-drift", "STREAMSCORE_METRICS__ENABLED": "false",
           "STREAMSCORE_MODEL__PATH": str(ROOT / "artifacts" / "sensor-model"), "STREAMSCORE_LOG_LEVEL": "WARNING"}
    config = load_config(ROOT / "examples" / "sensor.toml", env)
    ensure_topics({"bootstrap.servers": bootstrap}, {topic: 8})
    service = build_service(config)
    count = load * seconds
    runner = threading.Thread(target=lambda: service.run(max_events=count, idle_exit_seconds=15))
    runner.start()
    while not service.source.assigned:
        time.sleep(0.1)
    subprocess.run([sys.executable, "-m", "stream.cli", "simulate", "--config", str(ROOT / "examples" / "sensor.toml"),
                    "--topic", topic, "--count", str(count), "--keys", "1000", "--partitions", "8",
                    "--rate", str(load)], env=env, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    runner.join()
    latencies = np.frombuffer(service.stats.latencies_ms, dtype=np.float64)
    print(f"{len(latencies):,} events at {load:,}/s: p50 {np.percentile(latencies, 50):.1f} ms, "
          f"p99 {np.percentile(latencies, 99):.1f} ms, max {latencies.max():.1f} ms")
    slices = [round(float(np.percentile(s, 99))) for s in np.array_split(latencies, SLICES)]
    print(f"p99 of each of {SLICES} slices, in arrival order (ms): {slices}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
