"""The Confluent wire format against a real Schema Registry (Apicurio's Confluent-compatible API).

Evolution, refusal of an incompatible schema, unknown ids, and the registry
killed mid-stream and back, with both outage policies.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import threading
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from confluent_kafka import Producer

from models import ModelArtifact
from schemas import load_schema
from stream.avro.codec import AvroCodec, AvroEncoder
from stream.kafka.registry import RegistrySchemaSource
from stream.pipeline.deadletter import HEADER_PREFIX
from stream.runtime.wiring import build_service
from stream.tools.generators import sensor_events
from tests.integration.helpers import ROOT, produce, read_topic, service_config, unique, wait_until
from tests.integration.test_end_to_end import offline_scores

pytestmark = pytest.mark.integration

SENSOR = load_schema("sensor_reading")
# v1: the sensor reading with an optional field; the reader of these tests
V1 = {**SENSOR, "fields": [*SENSOR["fields"], {"name": "site", "type": ["null", "string"], "default": None}]}
# v2: a new field with a default, and v1's optional site dropped (the v1 reader's default stands in)
V2 = {**SENSOR, "fields": [*SENSOR["fields"], {"name": "firmware", "type": "string", "default": "?"}]}


def _sources(records, codec: AvroCodec) -> dict[tuple[int, int], int]:
    out: dict[tuple[int, int], int] = {}
    for r in records:
        p = codec.decode(r.value)
        key = (p["source_partition"], p["source_offset"])
        out[key] = out.get(key, 0) + 1
    return out


def test_evolved_writers_are_read_by_the_v1_reader_and_an_unknown_id_is_dead_lettered(
        kafka_bootstrap: str, schema_registry_url: str, small_model: ModelArtifact, tmp_path: Path) -> None:
    reader = tmp_path / "sensor_v1.avsc"
    reader.write_text(json.dumps(V1))
    topic = unique("evolution")
    source = RegistrySchemaSource(schema_registry_url)
    id1 = source.register(f"{topic}-value", V1)
    id2 = source.register(f"{topic}-value", V2)
    assert id1 != id2
    events = [r for r, _ in sensor_events(400, 10, seed=8)]
    produce(kafka_bootstrap, topic, [{**e, "site": "north"} for e in events[:200]], partitions=1,
            encoder=AvroEncoder(V1, "confluent", id1))
    produce(kafka_bootstrap, topic, [{**e, "firmware": "2.0"} for e in events[200:]], partitions=1,
            encoder=AvroEncoder(V2, "confluent", id2))
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(topic, key=b"k", value=b"\x00" + (99_999).to_bytes(4, "big") + b"\x02a")
    assert producer.flush(10) == 0
    config = service_config(kafka_bootstrap, small_model.path, topic, codec__format="confluent",
                            codec__schema_registry_url=schema_registry_url, codec__reader_schema=str(reader))

    stats = build_service(config).run(max_events=401, idle_exit_seconds=30)

    assert stats.predictions == 400 and stats.dead_letters == {"UnknownSchemaError": 1}
    outputs = AvroCodec(load_schema("prediction"), "confluent", schema_source=source)
    out = read_topic(kafka_bootstrap, config.kafka.output_topic, expected=400)
    decoded = sorted((outputs.decode(r.value) for r in out), key=lambda d: d["source_offset"])
    assert np.array_equal([d["score"] for d in decoded], offline_scores(small_model, config, events))
    subject = json.loads(urllib.request.urlopen(f"{schema_registry_url}/subjects/{config.kafka.output_topic}-value/"
                                                "versions/latest", timeout=10).read())
    assert json.loads(subject["schema"])["name"] == load_schema("prediction")["name"]
    (letter,) = read_topic(kafka_bootstrap, config.kafka.dead_letter_topic, expected=1)
    assert letter.headers[HEADER_PREFIX + "exception"] == b"UnknownSchemaError"


def test_an_incompatible_schema_is_refused_under_backward(schema_registry_url: str) -> None:
    subject = unique("compat") + "-value"
    source = RegistrySchemaSource(schema_registry_url)
    source.register(subject, V1)
    body = json.dumps({"compatibility": "BACKWARD"}).encode()
    request = urllib.request.Request(f"{schema_registry_url}/config/{subject}", data=body, method="PUT",
                                     headers={"Content-Type": "application/vnd.schemaregistry.v1+json"})
    urllib.request.urlopen(request, timeout=10).read()
    # a new required field without a default: a v2 reader cannot read v1 data
    incompatible = {**V1, "fields": [*V1["fields"], {"name": "region", "type": "string"}]}
    from stream.exceptions import SchemaRegistryUnavailableError

    with pytest.raises(SchemaRegistryUnavailableError, match="409"):
        source.register(subject, incompatible)
    assert source.register(subject, V2) > 0  # a compatible change is taken


def _registry(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SCHEMA_REGISTRY_URL"}
    return subprocess.run([str(ROOT / "scripts" / "local-registry"), *args], env=env, capture_output=True,
                          text=True, timeout=180)


@pytest.mark.parametrize("policy", ["pause", "dead_letter"])
def test_the_registry_killed_mid_stream_then_back_loses_nothing(
        kafka_bootstrap: str, schema_registry_url: str, small_model: ModelArtifact, policy: str) -> None:
    if _registry("status").returncode != 0:
        pytest.skip("the registry is not scripts/local-registry's: it cannot be killed from here")
    topic = unique(f"registry-kill-{policy.replace('_', '-')}")
    source = RegistrySchemaSource(schema_registry_url)
    # pause: each retry waits 10 s, so the registry can be back and restored between two retries
    config = service_config(kafka_bootstrap, small_model.path, topic, codec__format="confluent",
                            codec__schema_registry_url=schema_registry_url, batch__max_size=100,
                            processing__registry_unavailable=policy, processing__registry_retry_s=10.0,
                            state__changelog=False)
    paused = _PauseWatch()
    logging.getLogger("stream.runtime.service").addHandler(paused)
    events = [r for r, _ in sensor_events(600, 10, seed=14)]
    id1 = source.register(f"{topic}-value", SENSOR)
    positions = produce(kafka_bootstrap, topic, events[:300], partitions=2,
                        encoder=AvroEncoder(SENSOR, "confluent", id1))
    service = build_service(config)
    runner = threading.Thread(target=service.run, kwargs={"max_events": 600, "idle_exit_seconds": 60})
    runner.start()
    try:
        wait_until(lambda: service.stats.predictions >= 300, 60, "the first 300 predictions")
        # v2 is registered before the registry dies; the scorer meets its id only while the registry is away
        id2 = source.register(f"{topic}-value", V2)
        backup = _backup(schema_registry_url)
        assert _registry("kill").returncode == 0
        positions += produce(kafka_bootstrap, topic, [{**e, "firmware": "2"} for e in events[300:]], partitions=2,
                             encoder=AvroEncoder(V2, "confluent", id2))
        if policy == "pause":
            paused.clear()
            assert paused.wait(60), "the scorer did not pause"
            assert not service.readiness()["schema_registry_reachable"], "/readyz says why"
            assert service.stats.predictions == 300 and not service.stats.dead_letters, "nothing moves while away"
        else:
            wait_until(lambda: sum(service.stats.dead_letters.values()) == 300, 60, "the v2 events dead-lettered")
        # back, with its schemas: an in-memory registry is restored by registering them again in id order
        assert _registry("start").returncode == 0
        _restore(source, backup)
        assert json.loads(source.schema_text(id2))["fields"] == V2["fields"], "ids differ after restore"
        runner.join(timeout=120)
        assert not runner.is_alive()
    finally:
        logging.getLogger("stream.runtime.service").removeHandler(paused)
        service.stop()
        runner.join(timeout=30)
        if _registry("status").returncode != 0:
            _registry("start")
    outputs = AvroCodec(load_schema("prediction"), "confluent", schema_source=source)
    if policy == "pause":
        assert service.stats.predictions == 600 and not service.stats.dead_letters
        sources = _sources(read_topic(kafka_bootstrap, config.kafka.output_topic, expected=600), outputs)
        assert set(sources) == set(positions) and max(sources.values()) == 1
    else:
        dead = read_topic(kafka_bootstrap, config.kafka.dead_letter_topic, expected=300)
        assert {r.headers[HEADER_PREFIX + "exception"] for r in dead} == {b"SchemaUnavailableError"}
        got = {(int(r.headers[HEADER_PREFIX + "partition"]), int(r.headers[HEADER_PREFIX + "offset"])) for r in dead}
        got |= set(_sources(read_topic(kafka_bootstrap, config.kafka.output_topic, expected=300), outputs))
        assert got == set(positions) and service.stats.predictions + len(dead) == 600
    assert service.readiness()["schema_registry_reachable"] is True


class _PauseWatch(logging.Handler):
    """Set when the scorer starts a pause for the registry (it then leaves the registry alone that long)."""

    def __init__(self) -> None:
        super().__init__()
        self._event = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "pausing for" in record.getMessage():
            self._event.set()

    def clear(self) -> None:
        self._event.clear()

    def wait(self, timeout_s: float) -> bool:
        return self._event.wait(timeout_s)


def _get(url: str) -> Any:
    return json.loads(urllib.request.urlopen(url, timeout=10).read())


def _backup(url: str) -> list[tuple[int, str, str]]:
    """Every (id, subject, schema) the registry holds, in id order."""
    found = {}
    for subject in _get(f"{url}/subjects"):
        for version in _get(f"{url}/subjects/{subject}/versions"):
            entry = _get(f"{url}/subjects/{subject}/versions/{version}")
            found.setdefault(entry["id"], (entry["id"], subject, entry["schema"]))
    return [found[i] for i in sorted(found)]


def _restore(source: RegistrySchemaSource, backup: list[tuple[int, str, str]]) -> None:
    for schema_id, subject, schema in backup:
        assert source.register(subject, json.loads(schema)) == schema_id, "the registry gave another id"
