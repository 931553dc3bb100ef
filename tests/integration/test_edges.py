"""Hostile records and operator mistakes on a real broker: no record stops a partition, every mistake is one line."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from models import ModelArtifact
from schemas import load_schema
from stream.avro.codec import AvroCodec, AvroEncoder
from stream.pipeline.deadletter import HEADER_PREFIX
from stream.runtime.wiring import build_service
from stream.tools.generators import sensor_events
from tests.integration.helpers import ROOT, read_topic, service_config, service_environ, unique

pytestmark = pytest.mark.integration

PREDICTION = AvroCodec(load_schema("prediction"))


def create_topic(bootstrap: str, topic: str, partitions: int, **config: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, config=config)])
    futures[topic].result(timeout=30)


def produce_raw(bootstrap: str, topic: str, values: list[tuple[bytes, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 3_000_000, "linger.ms": 0})
    for key, value in values:
        producer.produce(topic, value, key, partition=0)
        producer.flush(30)
    assert producer.flush(30) == 0


def topics_of(bootstrap: str) -> set[str]:
    return set(AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics)


def run_cli(env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stream.cli", "run", "--config", str(ROOT / "examples" / "sensor.toml"),
                           *args], env={**os.environ, **env}, capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout)


def test_oversized_records_never_stop_the_partition_and_a_restart_finds_nothing_left(
        kafka_bootstrap: str, small_model: ModelArtifact) -> None:
    topic = unique("poison")
    create_topic(kafka_bootstrap, topic, 1, **{"max.message.bytes": "3000000"})
    enc = AvroEncoder(load_schema("sensor_reading"))
    now = int(time.time() * 1000)
    good = [{**r, "ts": now - 1000 + i} for i, (r, _) in enumerate(sensor_events(200, 5, seed=21))]
    huge_value = b"\x07" * 1_040_001                                          # not Avro, over the producer limit
    huge_key = {**good[0], "sensor_id": "k" * 1_000_000}                      # a valid reading, a 1 MB key
    values = [(r["sensor_id"].encode(), enc.encode(r)) for r in good[:100]]
    values += [(b"big", huge_value), (b"key", enc.encode(huge_key))]
    values += [(r["sensor_id"].encode(), enc.encode(r)) for r in good[100:]]
    produce_raw(kafka_bootstrap, topic, values)
    env = service_environ(kafka_bootstrap, small_model.path, topic, state__changelog=False)

    first = run_cli(env, "--max-events", "202", "--idle-exit-seconds", "60")
    assert first.returncode == 0, first.stderr[-3000:]
    assert '"events_in": 202' in first.stdout
    predictions = read_topic(kafka_bootstrap, topic + "-predictions", expected=200)
    letters = read_topic(kafka_bootstrap, topic + "-dlq", expected=2)
    assert sorted(PREDICTION.decode(p.value)["source_offset"] for p in predictions) == \
        [*range(100), *range(102, 202)]
    by_offset = {int(d.headers[HEADER_PREFIX + "offset"]): d for d in letters}
    assert sorted(by_offset) == [100, 101]
    big = by_offset[100]
    assert big.headers[HEADER_PREFIX + "exception"] == b"MalformedRecordError"
    assert big.headers[HEADER_PREFIX + "value.size"] == b"1040001"
    assert big.headers[HEADER_PREFIX + "value.sha256"] == hashlib.sha256(huge_value).hexdigest().encode()
    assert len(big.value) == 524_288 and big.value == huge_value[:524_288]
    assert by_offset[101].headers[HEADER_PREFIX + "exception"] == b"KeyTooLongError"

    committed = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": env["STREAMSCORE_KAFKA__GROUP_ID"]})
    assert [tp.offset for tp in committed.committed([TopicPartition(topic, 0)], timeout=10)] == [202]
    committed.close()
    again = run_cli(env, "--idle-exit-seconds", "5")  # the same input: everything was committed
    assert again.returncode == 0, again.stderr[-3000:]
    assert '"events_in": 0' in again.stdout
    assert len(read_topic(kafka_bootstrap, topic + "-predictions", expected=200, timeout_s=5)) == 200


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_a_prediction_the_broker_refuses_becomes_a_dead_letter_and_the_rest_goes_on(
        kafka_bootstrap: str, small_model: ModelArtifact, guarantee: str) -> None:
    topic = unique(f"refused-{guarantee.replace('_', '-')}")
    create_topic(kafka_bootstrap, topic, 1)
    # the predictions topic takes records of at most 8 KB; a prediction for a 9,000-character key is larger
    create_topic(kafka_bootstrap, topic + "-predictions", 1, **{"max.message.bytes": "8192"})
    enc = AvroEncoder(load_schema("sensor_reading"))
    now = int(time.time() * 1000)
    events = [{**r, "ts": now - 1000 + i} for i, (r, _) in enumerate(sensor_events(300, 6, seed=22))]
    long_keys = {50, 51, 220}
    for i in long_keys:
        events[i] = {**events[i], "sensor_id": f"long-{i}-" + "x" * 9000}
    produce_raw(kafka_bootstrap, topic, [(e["sensor_id"].encode(), enc.encode(e)) for e in events])
    # uncompressed batches of at most 4 KB: the broker's size limit then applies record by record
    settings = {"state__changelog": False, "validation__max_key_bytes": 20_000, "processing__guarantee": guarantee,
                "kafka__producer__batch_size": 4096, "kafka__producer__compression_type": "none"}
    if guarantee == "exactly_once":
        settings["processing__transactional_id"] = topic
    config = service_config(kafka_bootstrap, small_model.path, topic, **settings)
    service = build_service(config)
    stats = service.run(max_events=300, idle_exit_seconds=20)
    isolation = "read_committed" if guarantee == "exactly_once" else "read_uncommitted"
    predictions = read_topic(kafka_bootstrap, config.kafka.output_topic, expected=297, isolation=isolation)
    letters = read_topic(kafka_bootstrap, config.kafka.dead_letter_topic, expected=3, isolation=isolation)
    scored = sorted(PREDICTION.decode(p.value)["source_offset"] for p in predictions)
    refused = sorted(int(d.headers[HEADER_PREFIX + "offset"]) for d in letters)
    assert refused == sorted(long_keys) and scored == [i for i in range(300) if i not in long_keys]
    assert all(d.headers[HEADER_PREFIX + "exception"] == b"OutputRefusedError" and d.value is None for d in letters)
    assert all(b"too large" in d.headers[HEADER_PREFIX + "message"].lower() for d in letters)
    assert stats.consumed == 300
    assert service.metrics.registry.get_sample_value("streamscore_outputs_refused_total",
                                                     {"topic": config.kafka.dead_letter_topic}) == 3


def test_a_bad_librdkafka_setting_is_one_line_and_exit_2_before_anything_is_created(
        kafka_bootstrap: str, small_model: ModelArtifact) -> None:
    topic = unique("bad-setting")
    create_topic(kafka_bootstrap, topic, 1)
    env = service_environ(kafka_bootstrap, small_model.path, topic, kafka__consumer__fetch_wiat_max_ms=10)
    proc = run_cli(env)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines == ['streamscore: [kafka.consumer] is refused by librdkafka: No such configuration property: '
                     '"fetch.wiat.max.ms"'], proc.stderr
    assert not {topic + "-predictions", topic + "-dlq"} & topics_of(kafka_bootstrap)


def test_a_missing_input_topic_is_one_line_and_exit_2_and_creates_nothing(
        kafka_bootstrap: str, small_model: ModelArtifact) -> None:
    topic = unique("absent")
    env = service_environ(kafka_bootstrap, small_model.path, topic)
    proc = run_cli(env)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith(f"streamscore: input topic {topic} does not exist on")
    assert not [t for t in topics_of(kafka_bootstrap) if t.startswith(topic)]


def test_an_unreachable_broker_is_one_line_after_the_connect_timeout(small_model: ModelArtifact) -> None:
    env = service_environ("127.0.0.1:1", small_model.path, "anything", kafka__connect_timeout_s=3)
    proc = run_cli(env, timeout=60)
    assert proc.returncode == 1
    # librdkafka's connection errors stay quiet: one line says what happened
    noise = [line for line in proc.stderr.splitlines() if "INFO" not in line]
    assert len(noise) == 1 and "no Kafka broker at 127.0.0.1:1 answered within 3 s" in noise[0], proc.stderr
