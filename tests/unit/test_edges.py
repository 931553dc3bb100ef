"""Hostile records end as dead letters that fit, with the reason; refused outputs are rerouted (no broker)."""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field

import numpy as np
import pytest

from features import FeatureStore
from models import BatchScorer, ModelArtifact
from schemas import load_schema
from stream.avro.codec import AvroCodec, AvroEncoder
from stream.config import ServiceConfig, ValidationConfig
from stream.exceptions import SchemaRegistryUnavailableError
from stream.kafka.registry import BACKOFF_CAP_S, RegistrySchemaSource, backoff, is_retriable
from stream.pipeline.deadletter import HEADER_PREFIX, bare, dead_letter_for, record_size
from stream.pipeline.processor import BatchProcessor
from stream.pipeline.refusals import reroute
from stream.pipeline.results import BatchResult, Predictions
from stream.types import Rejected

SCHEMA = load_schema("sensor_reading")
OUT = load_schema("prediction")
GOOD = {"sensor_id": "s-1", "ts": 0, "temperature": 20.0, "pressure": 1000.0, "vibration": 0.1, "humidity": 40.0}


@dataclass
class Message:
    _value: bytes | None
    _offset: int
    _key: bytes | None = b"k"
    _headers: list = field(default_factory=list)
    _timestamp: int = 0

    def topic(self): return "in"
    def partition(self): return 0
    def offset(self): return self._offset
    def key(self): return self._key
    def value(self): return self._value
    def headers(self): return self._headers
    def timestamp(self): return (1, self._timestamp) if self._timestamp else (0, -1)


def processor(config: ServiceConfig, model: ModelArtifact, **validation) -> BatchProcessor:
    return BatchProcessor(codec=AvroCodec(SCHEMA), store=FeatureStore(config.features), scorer=BatchScorer(model),
                          encoder=AvroEncoder(OUT), key_field="sensor_id", time_field="ts",
                          validation=ValidationConfig(**validation))


def headers_of(letter) -> dict[str, bytes]:
    return dict(letter.headers)


def test_a_dead_letter_keeps_at_most_the_configured_bytes_and_says_what_it_cut() -> None:
    value = bytes(range(256)) * 4063 + b"x"  # 1,040,129 bytes
    letter = dead_letter_for(Message(value, 7, _key=b"k" * 5000), ValueError("bad"), "decode", max_bytes=1000)
    h = headers_of(letter)
    assert letter.value == value[:1000] and letter.key == b"k" * 1000
    assert h[HEADER_PREFIX + "value.size"] == b"1040129"
    assert h[HEADER_PREFIX + "value.sha256"] == hashlib.sha256(value).hexdigest().encode()
    assert h[HEADER_PREFIX + "value.truncated"] == b"true" and h[HEADER_PREFIX + "key.size"] == b"5000"
    small = dead_letter_for(Message(b"abc", 8), ValueError("bad"), "decode", max_bytes=1000)
    assert small.value == b"abc" and HEADER_PREFIX + "value.size" not in headers_of(small)
    stripped = bare(dead_letter_for(Message(value, 7, _headers=[("h", b"x" * 10)]), ValueError("bad"), "decode"))
    assert stripped.value is None and headers_of(stripped)[HEADER_PREFIX + "value.truncated"] == b"omitted"
    assert "h" not in headers_of(stripped) and headers_of(stripped)[HEADER_PREFIX + "headers.omitted"] == b"true"


def test_an_oversized_undecodable_record_becomes_a_dead_letter_the_producer_takes(
        small_config: ServiceConfig, small_model: ModelArtifact) -> None:
    enc = AvroEncoder(SCHEMA)
    now = int(time.time() * 1000)
    huge = Message(b"\x01" * 1_040_001, 0, _key=b"x" * 2_000_000, _headers=[("big", b"y" * 900_000)])
    result = processor(small_config, small_model).process([huge, Message(enc.encode({**GOOD, "ts": now}), 1)])
    assert len(result.predictions) == 1 and len(result.dead_letters) == 1
    letter = result.dead_letters[0]
    assert record_size(letter.key, letter.value, letter.headers) <= 1_000_000
    h = headers_of(letter)
    assert h[HEADER_PREFIX + "exception"] == b"MalformedRecordError"
    assert h[HEADER_PREFIX + "value.sha256"] == hashlib.sha256(b"\x01" * 1_040_001).hexdigest().encode()


def test_event_times_keys_and_timestamps_outside_the_rules_are_dead_lettered_with_why(
        small_config: ServiceConfig, small_model: ModelArtifact) -> None:
    enc = AvroEncoder(SCHEMA)
    now = int(time.time() * 1000)
    year_ms = 365 * 86_400_000
    records = [
        {**GOOD, "ts": now},                           # 0 fine
        {**GOOD, "ts": now + year_ms},                 # 1 a year ahead
        {**GOOD, "ts": 2**63 - 1},                     # 2 beyond any timestamp
        {**GOOD, "ts": -(2**62)},                      # 3 before year 1
        {**GOOD, "sensor_id": "k" * 100_000},          # 4 a 100 KB key
        {**GOOD, "ts": now - 10_000},                  # 5 out of order but valid: scored
        {**GOOD, "ts": now - 3 * 86_400_000},          # 6 three days older than its Kafka timestamp
        {**GOOD, "ts": now + 60_000},                  # 7 a minute ahead: within the default 300 s
    ]
    messages = [Message(enc.encode(r), i, _timestamp=now) for i, r in enumerate(records)]
    result = processor(small_config, small_model, max_event_age_s=86_400.0).process(messages)
    reasons = {int(headers_of(d)[HEADER_PREFIX + "offset"]): d.reason for d in result.dead_letters}
    assert reasons == {1: "EventTimeError", 2: "EventTimeError", 3: "EventTimeError", 4: "KeyTooLongError",
                       6: "EventTimeError"}
    assert sorted(result.predictions.rows.tolist()) == [0, 5, 7]
    messages_of = {int(headers_of(d)[HEADER_PREFIX + "offset"]): headers_of(d)[HEADER_PREFIX + "message"]
                   for d in result.dead_letters}
    assert b"ahead of this scorer's clock" in messages_of[1] and b"years 1-9999" in messages_of[2]
    assert b"older than its Kafka timestamp" in messages_of[6] and b"max_key_bytes" in messages_of[4]
    # with no age limit (the default) the old event is scored
    kept = processor(small_config, small_model).process(messages)
    assert 6 in kept.predictions.rows.tolist()


def test_refused_outputs_become_bare_dead_letters_naming_their_inputs() -> None:
    inputs = [Message(b"event-0", 10), Message(b"event-1", 11)]
    result = BatchResult(inputs=inputs, predictions=Predictions([b"a", b"b"], [b"p0", b"p1"],
                                                                np.array([1, 2]), np.array([0, 1])))
    letter = dead_letter_for(inputs[0], ValueError("x"), "decode")
    rejected = [
        Rejected("out", b"b", b"p1", [], "refused by the broker: Broker: Message size too large"),
        Rejected("dlq", letter.key, letter.value, letter.headers, "refused by the broker: too large"),
        Rejected("drift", b"score", b"...", [], "refused by the broker: too large"),
    ]
    rerouted = reroute(rejected, result, output_topic="out", dead_letter_topic="dlq")
    assert rerouted.inputs == {("in", 0, 11): "its prediction was refused by the broker: Broker: Message size "
                                              "too large", ("in", 0, 10): "its dead letter was refused by the "
                                                                          "broker: too large"}
    first, second = rerouted.dead_letters
    assert first.reason == "OutputRefusedError" and first.value is None
    assert headers_of(first)[HEADER_PREFIX + "offset"] == b"11" and headers_of(first)[HEADER_PREFIX + "stage"] == b"produce"
    assert second.reason == "ValueError" and second.value is None
    assert [r.topic for r in rerouted.dropped] == ["drift"]


def test_an_input_refused_before_is_dead_lettered_bare_when_read_again(
        small_config: ServiceConfig, small_model: ModelArtifact) -> None:
    enc = AvroEncoder(SCHEMA)
    now = int(time.time() * 1000)
    messages = [Message(enc.encode({**GOOD, "ts": now}), i) for i in range(3)]
    result = processor(small_config, small_model).process(messages, rejected={("in", 0, 1): "its prediction was x"})
    assert result.predictions.rows.tolist() == [0, 2]
    (letter,) = result.dead_letters
    assert letter.reason == "OutputRefusedError" and letter.value is None


def test_registry_retries_transport_errors_and_server_errors_only() -> None:
    class Answered(Exception):
        def __init__(self, status: int) -> None:
            self.http_status_code = status

    assert is_retriable(ConnectionError("refused")) and is_retriable(Answered(503)) and is_retriable(Answered(429))
    assert not is_retriable(Answered(404)) and not is_retriable(Answered(401)) and not is_retriable(Answered(409))
    assert all(0 <= backoff(k) <= min(BACKOFF_CAP_S, 0.1 * 2 ** (k - 1)) for k in range(1, 10) for _ in range(20))


def test_registry_credentials_reach_no_log_line_error_or_repr(caplog: pytest.LogCaptureFixture) -> None:
    in_url = RegistrySchemaSource("http://alice:s3cret@127.0.0.1:1/apis", attempts=2)
    in_settings = RegistrySchemaSource("http://127.0.0.1:1/apis", {"basic.auth.user.info": "bob:hunter2"}, attempts=2)
    text = ""
    for source in (in_url, in_settings):
        with caplog.at_level(logging.WARNING), pytest.raises(SchemaRegistryUnavailableError) as raised:
            source.schema_text(1)
        text += caplog.text + str(raised.value) + repr(source)
    assert "127.0.0.1:1" in text and "attempt 2/2" in text
    assert "s3cret" not in text and "hunter2" not in text and "alice" not in text


def test_a_prediction_that_cannot_be_encoded_becomes_a_dead_letter_and_the_rest_go_on(
        small_config: ServiceConfig, small_model: ModelArtifact) -> None:
    # an output schema whose key is an enum: a prediction for any other key cannot be written
    out = {**OUT, "fields": [{**f, "type": {"type": "enum", "name": "Known", "symbols": ["s1"]}}
                             if f["name"] == "key" else f for f in OUT["fields"]]}
    proc = BatchProcessor(codec=AvroCodec(SCHEMA), store=FeatureStore(small_config.features),
                          scorer=BatchScorer(small_model), encoder=AvroEncoder(out), key_field="sensor_id",
                          time_field="ts")
    enc = AvroEncoder(SCHEMA)
    now = int(time.time() * 1000)
    messages = [Message(enc.encode({**GOOD, "sensor_id": key, "ts": now}), i)
                for i, key in enumerate(["s1", "s2", "s1"])]
    result = proc.process(messages)
    assert result.predictions.rows.tolist() == [0, 2]
    (letter,) = result.dead_letters
    h = headers_of(letter)
    assert letter.reason == "OutputRejectedError" and h[HEADER_PREFIX + "offset"] == b"1"
    assert h[HEADER_PREFIX + "stage"] == b"produce" and b"cannot be encoded" in h[HEADER_PREFIX + "message"]
    assert letter.value == messages[1].value()  # a record refused for its output keeps its value


def test_a_prediction_larger_than_the_producer_sends_becomes_a_dead_letter(
        small_config: ServiceConfig, small_model: ModelArtifact) -> None:
    proc = BatchProcessor(codec=AvroCodec(SCHEMA), store=FeatureStore(small_config.features),
                          scorer=BatchScorer(small_model), encoder=AvroEncoder(OUT), key_field="sensor_id",
                          time_field="ts", max_output_bytes=1_200)
    enc = AvroEncoder(SCHEMA)
    now = int(time.time() * 1000)
    keys = ["s-1", "k" * 800, "s-2"]  # the middle prediction is over 1,200 - 512 bytes of room
    result = proc.process([Message(enc.encode({**GOOD, "sensor_id": k, "ts": now}), i) for i, k in enumerate(keys)])
    assert result.predictions.rows.tolist() == [0, 2]
    (letter,) = result.dead_letters
    h = headers_of(letter)
    assert letter.reason == "OutputRejectedError" and h[HEADER_PREFIX + "offset"] == b"1"
    assert b"over the producer's message.max.bytes (1,200)" in h[HEADER_PREFIX + "message"]
    assert record_size(letter.key, letter.value, letter.headers) <= 1_200
