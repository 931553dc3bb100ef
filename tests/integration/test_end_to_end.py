"""The whole path on a real broker: events in, one prediction per event out, equal to offline scoring."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from confluent_kafka import Consumer, TopicPartition

from features import compute_features
from models import BatchScorer, ModelArtifact
from schemas import load_schema
from stream.avro.codec import AvroCodec
from stream.config import ServiceConfig
from stream.pipeline.deadletter import HEADER_PREFIX
from stream.runtime.wiring import build_service
from stream.tools.generators import sensor_events
from tests.integration.helpers import (
    ROOT,
    live_feed,
    produce,
    read_topic,
    service_config,
    service_environ,
    unique,
    wait_until,
)

pytestmark = pytest.mark.integration

PREDICTION = AvroCodec(load_schema("prediction"))


def decode_all(records) -> list[dict]:
    return [PREDICTION.decode(r.value) for r in records]


def offline_scores(model: ModelArtifact, config: ServiceConfig, events: list[dict]) -> np.ndarray:
    features = compute_features(config.features, events, "sensor_id", "ts")
    return BatchScorer(model).score(features).score


def test_every_event_gets_exactly_one_prediction_equal_to_offline(
    kafka_bootstrap: str, small_model: ModelArtifact
) -> None:
    topic = unique("sensor")
    events = [r for r, _ in sensor_events(6000, 60, seed=21)]
    positions = produce(kafka_bootstrap, topic, events, partitions=8)
    config = service_config(kafka_bootstrap, small_model.path, topic, batch__max_size=700, batch__max_wait_ms=30)

    stats = build_service(config).run(max_events=len(events), idle_exit_seconds=30)

    assert stats.consumed == stats.predictions == len(events)
    out = read_topic(kafka_bootstrap, config.kafka.output_topic, expected=len(events))
    predictions = decode_all(out)
    by_source = {(p["source_partition"], p["source_offset"]): p for p in predictions}
    assert len(predictions) == len(events), "one prediction per event, no more"
    assert len(by_source) == len(events), "no (partition, offset) twice"
    assert set(by_source) == set(positions)

    expected = offline_scores(small_model, config, events)
    got = np.array([by_source[pos]["score"] for pos in positions])
    assert np.array_equal(got, expected), "scores differ from offline scoring of the same events"
    assert all(by_source[pos]["key"] == e["sensor_id"] and by_source[pos]["event_time"] == e["ts"]
               for pos, e in zip(positions, events))
    assert all(r.key == p["key"].encode() for r, p in zip(out, predictions))

    # per-key order: each key's predictions come out in the order its events went in
    seen: dict[str, list[int]] = defaultdict(list)
    for _record, p in sorted(zip(out, predictions), key=lambda rp: (rp[0].partition, rp[0].offset)):
        seen[p["key"]].append(p["source_offset"])
    assert len(seen) == 60
    assert all(offsets == sorted(offsets) for offsets in seen.values())


def test_undecodable_message_is_dead_lettered_without_blocking(kafka_bootstrap: str, small_model: ModelArtifact) -> None:
    topic = unique("poison")
    events = [r for r, _ in sensor_events(300, 5, seed=4)]
    produce(kafka_bootstrap, topic, events[:150], partitions=1)
    producer_conf = {"bootstrap.servers": kafka_bootstrap}
    from confluent_kafka import Producer

    producer = Producer(producer_conf)
    producer.produce(topic, key=b"sensor-x", value=b"\x00\x01garbage", headers=[("trace-id", b"t-42")])
    assert producer.flush(10) == 0
    produce(kafka_bootstrap, topic, events[150:], partitions=1)
    config = service_config(kafka_bootstrap, small_model.path, topic)

    stats = build_service(config).run(max_events=301, idle_exit_seconds=30)

    assert stats.consumed == 301 and stats.predictions == 300
    assert stats.dead_letters == {"MalformedRecordError": 1}
    (dead,) = read_topic(kafka_bootstrap, config.kafka.dead_letter_topic, expected=1)
    assert dead.key == b"sensor-x" and dead.value == b"\x00\x01garbage"
    assert dead.headers["trace-id"] == b"t-42"
    assert dead.headers[HEADER_PREFIX + "topic"] == topic.encode()
    assert dead.headers[HEADER_PREFIX + "partition"] == b"0"
    assert dead.headers[HEADER_PREFIX + "offset"] == b"150"
    assert dead.headers[HEADER_PREFIX + "exception"] == b"MalformedRecordError"
    assert dead.headers[HEADER_PREFIX + "stage"] == b"decode"
    offsets = sorted(p["source_offset"] for p in decode_all(read_topic(kafka_bootstrap, config.kafka.output_topic, 300)))
    assert offsets == [o for o in range(301) if o != 150]


def test_restarted_scorer_resumes_from_committed_offsets(kafka_bootstrap: str, small_model: ModelArtifact) -> None:
    topic = unique("resume")
    events = [r for r, _ in sensor_events(3000, 30, seed=5)]
    positions = produce(kafka_bootstrap, topic, events, partitions=4)
    config = service_config(kafka_bootstrap, small_model.path, topic, batch__max_size=250)

    first = build_service(config).run(max_events=1100, idle_exit_seconds=30)
    assert first.consumed == 1100
    second = build_service(config).run(idle_exit_seconds=5)
    assert second.consumed == 1900

    predictions = decode_all(read_topic(kafka_bootstrap, config.kafka.output_topic, expected=3000))
    sources = [(p["source_partition"], p["source_offset"]) for p in predictions]
    assert len(sources) == 3000 and set(sources) == set(positions), "an event was skipped or scored twice"


def test_cli_stops_on_sigterm_after_committing_what_it_produced(kafka_bootstrap: str, small_model: ModelArtifact) -> None:
    topic = unique("sigterm")
    events = [r for r, _ in sensor_events(30_000, 20, seed=6)]
    # the stream goes on while the scorer is stopped: 29,000 more over ~10 s
    _, feeder = live_feed(kafka_bootstrap, topic, events, 1000, partitions=2, rate=3000.0)
    config = service_config(kafka_bootstrap, small_model.path, topic, batch__max_size=50)
    env = {**os.environ, **service_environ(kafka_bootstrap, small_model.path, topic, batch__max_size=50)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "stream.cli", "run", "--config", str(ROOT / "examples" / "sensor.toml")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )
    # wait until it has scored something, then stop it mid-stream
    wait_until(lambda: read_topic(kafka_bootstrap, config.kafka.output_topic, 1, timeout_s=1), 60, "a first prediction")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    assert "SIGTERM: finishing the current batch" in err

    predictions = decode_all(read_topic(kafka_bootstrap, config.kafka.output_topic, expected=1, timeout_s=10))
    assert 0 < len(predictions) < len(events), "stopped mid-stream"
    last = defaultdict(lambda: -1)
    for p in predictions:
        last[p["source_partition"]] = max(last[p["source_partition"]], p["source_offset"])
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": config.kafka.group_id})
    committed = consumer.committed([TopicPartition(topic, p) for p in range(2)], timeout=10)
    consumer.close()
    # every produced output is committed, and nothing beyond it
    assert {tp.partition: tp.offset for tp in committed if tp.offset >= 0} == {p: o + 1 for p, o in last.items()}
    assert len(predictions) == sum(o + 1 for o in last.values()), "a gap or a repeat before the committed offsets"
    assert f'"predictions_out": {len(predictions)}' in out
    feeder.join()


def test_cli_refuses_a_bad_config_with_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text((ROOT / "examples" / "sensor.toml").read_text().replace("[batch]", "[batch]\nmax_sise = 10"))
    proc = subprocess.run([sys.executable, "-m", "stream.cli", "run", "--config", str(bad)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"streamscore: unknown key 'batch.max_sise' in {bad}; [batch] takes ['max_size', 'max_wait_ms']"
    ]


def test_a_taken_metrics_port_is_a_clear_start_up_error(kafka_bootstrap: str, small_model: ModelArtifact) -> None:
    import socket

    from stream.exceptions import ConfigError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        topic = unique("port")
        produce(kafka_bootstrap, topic, [], partitions=1)  # the input topic exists: the port is what fails
        config = service_config(kafka_bootstrap, small_model.path, topic, metrics__port=port)
        with pytest.raises(ConfigError, match=f"cannot serve metrics on 127.0.0.1:{port}"):
            build_service(config)
