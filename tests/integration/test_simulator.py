"""`streamscore simulate` on a real broker: seeded, reproducible, and the SP500 replay scored end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from features import compute_features
from models import BatchScorer
from schemas import load_schema
from stream.avro.codec import AvroCodec
from stream.config import load_config
from stream.runtime.wiring import build_service
from stream.tools.generators import sp500_ticks
from stream.tools.train import train_from_config
from tests.integration.helpers import ROOT, read_topic, unique

pytestmark = pytest.mark.integration


def simulate(bootstrap: str, *args: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "stream.cli", "simulate", "--bootstrap-servers", bootstrap, *args],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ}, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def by_partition(records) -> dict[int, list[tuple[bytes, bytes]]]:
    out: dict[int, list[tuple[bytes, bytes]]] = defaultdict(list)
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        out[r.partition].append((r.key, r.value))
    return out


def test_same_seed_gives_the_same_stream(kafka_bootstrap: str) -> None:
    common = ["--kind", "sensor", "--count", "3000", "--rate", "0", "--keys", "30",
              "--event-time", "synthetic", "--partitions", "4"]
    topics = [unique("sim-a"), unique("sim-b"), unique("sim-c")]
    for topic, seed in zip(topics, ("5", "5", "6")):
        assert simulate(kafka_bootstrap, "--topic", topic, "--seed", seed, *common)["produced"] == 3000
    a, b, c = (read_topic(kafka_bootstrap, t, expected=3000) for t in topics)
    assert len(a) == len(b) == 3000
    assert by_partition(a) == by_partition(b), "same seed, different stream"
    assert by_partition(a) != by_partition(c)
    codec = AvroCodec(load_schema("sensor_reading"))
    first = [codec.decode(v) for _, v in by_partition(a)[0][:3]]
    assert all(r["ts"] >= 1_700_000_000_000 for r in first)


def test_a_backlog_produced_at_full_speed_keeps_the_event_time_spacing_asked_for(kafka_bootstrap: str) -> None:
    topic = unique("sim-spacing")
    simulate(kafka_bootstrap, "--topic", topic, "--count", "2000", "--rate", "0", "--event-time", "synthetic",
             "--event-rate", "500", "--start-ms", "1700000000000", "--partitions", "1", "--keys", "10")
    codec = AvroCodec(load_schema("sensor_reading"))
    times = [codec.decode(r.value)["ts"] for r in sorted(read_topic(kafka_bootstrap, topic, expected=2000),
                                                          key=lambda r: r.offset)]
    assert times == [1_700_000_000_000 + 2 * i for i in range(2000)]  # 2 ms apart: 500 events/s
    proc = subprocess.run([sys.executable, "-m", "stream.cli", "simulate", "--bootstrap-servers", kafka_bootstrap,
                           "--topic", topic, "--count", "1", "--event-rate", "0"],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 2 and "--event-rate must be > 0" in proc.stderr


def test_backlog_mode_spaces_event_times_at_the_event_rate_and_ends_about_now(kafka_bootstrap: str) -> None:
    topic = unique("sim-backlog")
    before_ms = time.time() * 1000
    result = simulate(kafka_bootstrap, "--topic", topic, "--count", "1000", "--backlog", "--event-rate", "250",
                      "--partitions", "1", "--keys", "5")
    after_ms = time.time() * 1000
    assert result["produced"] == 1000
    codec = AvroCodec(load_schema("sensor_reading"))
    times = [codec.decode(r.value)["ts"] for r in sorted(read_topic(kafka_bootstrap, topic, expected=1000),
                                                          key=lambda r: r.offset)]
    assert np.all(np.diff(times) == 4)  # 4 ms apart: 250 events/s
    span_ms = 1000 * 1000 / 250
    assert before_ms - span_ms - 1 <= times[0] <= after_ms - span_ms  # so the last event is about now


def test_simulate_makes_the_kind_the_config_names(kafka_bootstrap: str) -> None:
    topic = unique("sim-kind")
    simulate(kafka_bootstrap, "--config", str(ROOT / "examples" / "market.toml"), "--topic", topic,
             "--count", "50", "--rate", "0", "--partitions", "1")
    codec = AvroCodec(load_schema("market_tick"))
    records = [codec.decode(r.value) for r in read_topic(kafka_bootstrap, topic, expected=50)]
    assert len(records) == 50 and all("symbol" in r and "price" in r for r in records)


def test_bad_every_sends_undecodable_values(kafka_bootstrap: str) -> None:
    topic = unique("sim-bad")
    simulate(kafka_bootstrap, "--topic", topic, "--count", "1000", "--rate", "0", "--bad-every", "100", "--partitions", "1")
    codec = AvroCodec(load_schema("sensor_reading"))
    bad = 0
    for r in read_topic(kafka_bootstrap, topic, expected=1000):
        try:
            codec.decode(r.value)
        except Exception:
            bad += 1
    assert bad == 10


def test_sp500_replay_is_scored_by_the_market_example(kafka_bootstrap: str, tmp_path: Path) -> None:
    topic = unique("sp500")
    environ = {
        "STREAMSCORE_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
        "STREAMSCORE_KAFKA__INPUT_TOPICS": json.dumps([topic]),
        "STREAMSCORE_KAFKA__OUTPUT_TOPIC": topic + "-predictions",
        "STREAMSCORE_KAFKA__DEAD_LETTER_TOPIC": topic + "-dlq",
        "STREAMSCORE_KAFKA__GROUP_ID": topic,
        "STREAMSCORE_MODEL__PATH": str(tmp_path / "market"),
        "STREAMSCORE_METRICS__PORT": "0",
    }
    config = load_config(ROOT / "examples" / "market.toml", environ)
    model = train_from_config(config, tmp_path / "market")
    simulate(kafka_bootstrap, "--kind", "market", "--replay", "sp500", "--topic", topic, "--count", "2500",
             "--rate", "0", "--partitions", "4", "--seed", "3")

    stats = build_service(config).run(max_events=2500, idle_exit_seconds=30)

    assert stats.predictions == 2500
    decoded = [AvroCodec(load_schema("prediction")).decode(r.value)
               for r in read_topic(kafka_bootstrap, config.kafka.output_topic, expected=2500)]
    assert len(decoded) == 2500
    ticks = [r for r, _ in sp500_ticks(seed=3, count=2500)]
    expected = BatchScorer(model).score(compute_features(config.features, ticks, "symbol", "ts")).score
    # per symbol, in event order: each symbol's ticks share one partition
    got: dict[str, list[float]] = defaultdict(list)
    for d in sorted(decoded, key=lambda d: (d["source_partition"], d["source_offset"])):
        got[d["key"]].append(d["score"])
    want: dict[str, list[float]] = defaultdict(list)
    for tick, score in zip(ticks, expected):
        want[tick["symbol"]].append(score)
    assert set(got) == set(want) and len(got) == 10
    for symbol in want:
        np.testing.assert_allclose(got[symbol], want[symbol], rtol=1e-9, atol=1e-12)
