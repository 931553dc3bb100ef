"""Every bundled schema parses, and a record round-trips through it unchanged."""

from __future__ import annotations

import io

import fastavro
import pytest
from fastavro.schema import parse_schema

from schemas import SCHEMA_DIR, fingerprint, load_schema
from stream.avro.codec import AvroCodec, AvroEncoder

SAMPLES = {
    "sensor_reading": {"sensor_id": "sensor-00001", "ts": 1_700_000_000_123, "temperature": 61.5,
                       "pressure": 101_325.25, "vibration": 2.25, "humidity": 44.0},
    "market_tick": {"symbol": "AAPL", "ts": 1_700_000_000_000, "price": 189.5, "size": 100.0,
                    "bid": 189.49, "ask": 189.51},
    "prediction": {"key": "sensor-00001", "event_time": 1_700_000_000_123, "source_topic": "in",
                   "source_partition": 3, "source_offset": 42, "model_name": "m", "model_version": "1",
                   "score": 0.25, "label": "0",
                   "probabilities": [{"label": "0", "probability": 0.75}, {"label": "1", "probability": 0.25}],
                   "scored_at": 1_700_000_000_200, "window_events": 7},
    "drift_event": {"signal": "input:temperature", "detector": "adwin", "model_name": "m", "model_version": "1",
                    "topic": "in", "partition": 2, "offset": 1234, "event_time": 1_700_000_000_000,
                    "detected_at": 1_700_000_000_500, "observations": 2048, "mean_before": 0.01,
                    "mean_after": 0.98, "width_before": 2048, "width_after": 64},
    "label": {"id": "in/2/1234", "label": "1", "label_time": 1_700_000_100_000},
}
SAMPLES["shadow_prediction"] = {**SAMPLES["prediction"], "model_version": "2", "role": "challenger"}


def test_shadow_predictions_are_predictions_with_a_role() -> None:
    prediction, shadow = load_schema("prediction"), load_schema("shadow_prediction")
    names = [f["name"] for f in shadow["fields"]]
    assert [n for n in names if n != "role"] == [f["name"] for f in prediction["fields"]]
    assert [f for f in shadow["fields"] if f["name"] != "role"] == prediction["fields"]


def test_every_schema_file_has_a_sample() -> None:
    assert sorted(p.stem for p in SCHEMA_DIR.glob("*.avsc")) == sorted(SAMPLES)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_schema_round_trips_a_record(name: str) -> None:
    schema = load_schema(name)
    parse_schema(schema)  # raises on an invalid schema
    record = SAMPLES[name]
    encoded = AvroEncoder(schema).encode(record)
    assert AvroCodec(schema).decode(encoded) == record
    # and through fastavro's container file, with the logical types kept
    buf = io.BytesIO()
    fastavro.writer(buf, parse_schema(schema), [record])
    buf.seek(0)
    (back,) = list(fastavro.reader(buf))
    assert AvroEncoder(schema).encode(_millis(back)) == encoded


def test_fingerprint_ignores_docs_but_not_types() -> None:
    schema = load_schema("sensor_reading")
    no_docs = {**schema, "doc": "other", "fields": [{k: v for k, v in f.items() if k != "doc"} for f in schema["fields"]]}
    assert fingerprint(no_docs) == fingerprint(schema)
    changed = {**schema, "fields": [*schema["fields"][:-1], {"name": "humidity", "type": "float"}]}
    assert fingerprint(changed) != fingerprint(schema)


def _millis(record: dict) -> dict:
    import datetime as dt

    return {k: int(v.timestamp() * 1000) if isinstance(v, dt.datetime) else v for k, v in record.items()}
