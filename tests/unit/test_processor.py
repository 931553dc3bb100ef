"""One micro-batch without a broker: predictions, dead letters and offsets."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from features import FeatureStore, compute_features
from models import BatchScorer, ModelArtifact
from schemas import load_schema
from stream.codec import AvroCodec, AvroEncoder
from stream.config import ServiceConfig
from stream.deadletter import HEADER_PREFIX
from stream.generators import sensor_events
from stream.processor import BatchProcessor

SCHEMA = load_schema("sensor_reading")
OUT = load_schema("prediction")


@dataclass
class FakeMessage:
    """The parts of confluent_kafka.Message the processor reads."""

    _value: bytes | None
    _offset: int
    _partition: int = 0
    _key: bytes | None = b"k"
    _headers: list = field(default_factory=list)
    _topic: str = "in"

    def topic(self): return self._topic
    def partition(self): return self._partition
    def offset(self): return self._offset
    def key(self): return self._key
    def value(self): return self._value
    def headers(self): return self._headers


def make_processor(config: ServiceConfig, artifact: ModelArtifact) -> BatchProcessor:
    return BatchProcessor(AvroCodec(SCHEMA), FeatureStore(config.features), BatchScorer(artifact),
                          AvroEncoder(OUT), "sensor_id", "ts")


def test_batch_scores_match_offline(small_config: ServiceConfig, small_model: ModelArtifact) -> None:
    records = [r for r, _ in sensor_events(1500, 25, seed=9)]
    enc = AvroEncoder(SCHEMA)
    messages = [FakeMessage(enc.encode(r), i, _partition=i % 3) for i, r in enumerate(records)]
    proc = make_processor(small_config, small_model)
    results = [proc.process(messages[i : i + 400]) for i in range(0, 1500, 400)]
    decoded = [AvroCodec(OUT).decode(p.value) for res in results for p in res.predictions]
    assert len(decoded) == 1500 and not any(res.dead_letters for res in results)
    offline = BatchScorer(small_model).score(compute_features(small_config.features, records, "sensor_id", "ts"))
    assert np.array_equal([d["score"] for d in decoded], offline.score)
    assert [d["source_offset"] for d in decoded] == list(range(1500))
    assert all(d["model_name"] == "sensor-fault" and d["key"] == r["sensor_id"] for d, r in zip(decoded, records))
    assert results[-1].next_offsets == {("in", 0): 1497 + 1, ("in", 1): 1498 + 1, ("in", 2): 1499 + 1}


def test_bad_records_become_dead_letters_and_the_rest_is_scored(small_config: ServiceConfig, small_model: ModelArtifact) -> None:
    enc = AvroEncoder(SCHEMA)
    good = [r for r, _ in sensor_events(5, 2, seed=1)]
    nan = {**good[0], "temperature": float("nan")}
    no_key = {**good[0], "sensor_id": ""}
    messages = [
        FakeMessage(enc.encode(good[0]), 10),
        FakeMessage(b"\xff\xfe garbage", 11, _key=b"bad", _headers=[("trace", b"abc")]),
        FakeMessage(enc.encode(nan), 12),
        FakeMessage(enc.encode(good[1]), 13),
        FakeMessage(enc.encode(no_key), 14),
        FakeMessage(None, 15),
        FakeMessage(enc.encode(good[2]), 16),
    ]
    result = make_processor(small_config, small_model).process(messages)
    assert [AvroCodec(OUT).decode(p.value)["source_offset"] for p in result.predictions] == [10, 13, 16]
    assert [d.reason for d in result.dead_letters] == [
        "MalformedRecordError", "InvalidRecordError", "InvalidRecordError", "MalformedRecordError"]
    first = result.dead_letters[0]
    assert first.key == b"bad" and first.value == b"\xff\xfe garbage"
    headers = dict(first.headers)
    assert headers["trace"] == b"abc"
    assert headers[HEADER_PREFIX + "offset"] == b"11"
    assert headers[HEADER_PREFIX + "topic"] == b"in"
    assert headers[HEADER_PREFIX + "stage"] == b"decode"
    assert headers[HEADER_PREFIX + "exception"] == b"MalformedRecordError"
    assert int(headers[HEADER_PREFIX + "timestamp"]) > 1_700_000_000_000
    assert b"temperature" in dict(result.dead_letters[1].headers)[HEADER_PREFIX + "message"]
    assert result.next_offsets == {("in", 0): 17}
    assert result.consumed == 7


def test_a_rejected_record_leaves_the_window_untouched(small_config: ServiceConfig, small_model: ModelArtifact) -> None:
    enc = AvroEncoder(SCHEMA)
    records = [r for r, _ in sensor_events(50, 1, seed=2)]
    clean = make_processor(small_config, small_model).process([FakeMessage(enc.encode(r), i) for i, r in enumerate(records)])
    poisoned = [FakeMessage(enc.encode(r), i) for i, r in enumerate(records)]
    poisoned.insert(20, FakeMessage(enc.encode({**records[20], "pressure": float("inf")}), 999))
    dirty = make_processor(small_config, small_model).process(poisoned)
    assert len(clean.predictions) == len(dirty.predictions) == 50
    scores = lambda res: [AvroCodec(OUT).decode(p.value)["score"] for p in res.predictions]  # noqa: E731
    assert scores(clean) == scores(dirty)


@pytest.mark.parametrize("size", [1, 7, 1000])
def test_empty_and_all_bad_batches_produce_no_model_call(small_config, small_model, size: int) -> None:
    result = make_processor(small_config, small_model).process([FakeMessage(b"x", i) for i in range(size)])
    assert len(result.predictions) == 0 and len(result.dead_letters) == size and result.model_seconds == 0.0


def test_labels_join_predictions_and_bad_labels_are_dead_lettered(small_config: ServiceConfig, small_model: ModelArtifact) -> None:
    from models.drift import DriftMonitor, SignalSpec
    from models.labels import LabelJoiner
    from stream.quality import QualityTracker

    monitor = DriftMonitor([SignalSpec("error")], "sensor-fault", "1", small_config.features.fields,
                           small_config.features.feature_names)
    joiner = LabelJoiner("classification", small_model.manifest["classes"])
    quality = QualityTracker(monitor, "1", joiner, AvroCodec(load_schema("label")))
    proc = BatchProcessor(AvroCodec(SCHEMA), FeatureStore(small_config.features), BatchScorer(small_model),
                          AvroEncoder(OUT), "sensor_id", "ts", quality=quality, labels_topic="labels")
    enc = AvroEncoder(SCHEMA)
    pairs = list(sensor_events(20, 4, seed=3))
    scored = proc.process([FakeMessage(enc.encode(r), i) for i, (r, _) in enumerate(pairs)])
    assert len(scored.predictions) == 20 and len(joiner) == 20

    label_enc = AvroEncoder(load_schema("label"))
    labels = [FakeMessage(label_enc.encode({"id": f"in/0/{i}", "label": str(y), "label_time": 0}), 100 + i,
                          _topic="labels") for i, (_, y) in enumerate(pairs[:5])]
    labels.append(FakeMessage(b"\x00garbage", 105, _topic="labels"))
    labels.append(FakeMessage(label_enc.encode({"id": "in/0/999", "label": "1", "label_time": 0}), 106, _topic="labels"))
    result = proc.process(labels)
    assert result.consumed == 0 and result.labels == 7 and len(result.predictions) == 0
    assert [d.reason for d in result.dead_letters] == ["MalformedRecordError"]
    assert result.next_offsets == {("labels", 0): 107}
    assert (joiner.joined, joiner.unmatched, len(joiner)) == (5, 1, 15)
    assert joiner.metric_values()[("1", "accuracy")] == 1.0  # the test model is right on these five


def test_labels_can_name_events_by_a_configured_id_field(small_config: ServiceConfig, small_model: ModelArtifact) -> None:
    from models.labels import LabelJoiner
    from stream.quality import QualityTracker

    joiner = LabelJoiner("classification", small_model.manifest["classes"])
    quality = QualityTracker(None, "1", joiner, AvroCodec(load_schema("label")), id_field="ts")
    proc = BatchProcessor(AvroCodec(SCHEMA), FeatureStore(small_config.features), BatchScorer(small_model),
                          AvroEncoder(OUT), "sensor_id", "ts", quality=quality, labels_topic="labels")
    records = [r for r, _ in sensor_events(10, 3, seed=4)]
    proc.process([FakeMessage(AvroEncoder(SCHEMA).encode(r), i) for i, r in enumerate(records)])
    label = AvroEncoder(load_schema("label")).encode({"id": str(records[3]["ts"]), "label": "0", "label_time": 0})
    proc.process([FakeMessage(label, 0, _topic="labels")])
    assert (joiner.joined, joiner.unmatched) == (1, 0)
