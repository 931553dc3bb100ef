"""streamscore's job as a Quix Streams 3.x application: the fastest idiomatic one we could write.

Reads the sensor backlog (schemaless Avro, Quix's own AvroDeserializer), and
gives every record to a BatchingSink. Quix flushes the sink at each
checkpoint (every COMMIT_EVERY records or commit interval), one batch per
partition in offset order; the sink computes the batch's features with
streamscore's FeatureStore (the same windows, bit for bit), scores them with
one scikit-learn ``predict_proba`` call on the same trained model, encodes one
prediction per event with fastavro (streamscore's prediction schema, the same
output topic format) and produces them, flushed before Quix commits.

What it does not do, that streamscore does: no drift detection, no window
state that follows its partition (a restart starts with empty windows), no
exactly-once, no dead letters (a bad record stops it), no metrics.

Run by bench/peer.py in its own environment (quixstreams pins its own
confluent-kafka):

    python bench/peers/quix_scorer.py BOOTSTRAP INPUT OUTPUT GROUP EVENTS MODEL_DIR

Prints a JSON line: events, seconds (first record decoded to last prediction acknowledged), eps.
"""

from __future__ import annotations

import io
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import fastavro
import numpy as np
from confluent_kafka import Producer
from quixstreams import Application
from quixstreams.models.serializers.avro import AvroDeserializer
from quixstreams.sinks.base import BatchingSink, SinkBatch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from features import FeatureStore  # noqa: E402
from models import ModelArtifact  # noqa: E402
from schemas import load_schema  # noqa: E402
from stream.config import load_config  # noqa: E402

CONFIG = ROOT / "examples" / "sensor.toml"
COMMIT_EVERY = 5_000  # records per checkpoint: the sink's batch (streamscore scores batches of up to 1,000)


class TimedAvro(AvroDeserializer):
    """Quix's AvroDeserializer, noting when the first record arrived (streamscore times from its first event too)."""

    first: float | None = None

    def __call__(self, value: bytes, ctx: object) -> object:
        if TimedAvro.first is None:
            TimedAvro.first = time.perf_counter()
        return super().__call__(value, ctx)


class ScoringSink(BatchingSink):
    """Features, one model call and the predictions of each checkpoint's batch of a partition."""

    def __init__(self, app: Application, bootstrap: str, output: str, events: int, model_dir: Path) -> None:
        super().__init__()
        config = load_config(CONFIG, {})
        self.app, self.output, self.events = app, output, events
        self.store = FeatureStore(config.features, config.state.key_ttl_ms)
        self.fields = config.features.fields
        self.key_field, self.time_field = config.codec.key_field, config.codec.time_field
        artifact = ModelArtifact.load(model_dir)
        self.model, self.name, self.version = artifact.model, artifact.name, artifact.version
        self.classes = [str(c) for c in self.model.classes_]
        self.schema = fastavro.parse_schema(load_schema("prediction"))
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
        self.done = 0
        self.last: float | None = None

    def write(self, batch: SinkBatch) -> None:
        items = list(batch)
        records = [item.value for item in items]
        keys = [r[self.key_field] for r in records]
        times = np.fromiter((r[self.time_field] for r in records), dtype=np.int64, count=len(records))
        values = np.array([[r[f] for f in self.fields] for r in records], dtype=np.float64)
        partitions = np.full(len(records), batch.partition, dtype=np.int64)
        features = self.store.update_arrays(keys, times, values, partitions)
        proba = self.model.predict_proba(features)
        labels = proba.argmax(axis=1)
        now = int(time.time() * 1000)
        for item, key, ts, p, label in zip(items, keys, times.tolist(), proba.tolist(), labels.tolist()):
            out = io.BytesIO()
            fastavro.schemaless_writer(out, self.schema, {
                "key": key, "event_time": ts, "source_topic": batch.topic, "source_partition": batch.partition,
                "source_offset": item.offset, "model_name": self.name, "model_version": self.version,
                "score": p[1] if len(p) == 2 else p[label], "label": self.classes[label],
                "probabilities": [{"label": c, "probability": q} for c, q in zip(self.classes, p)],
                "scored_at": now,
            })
            self.producer.produce(self.output, out.getvalue(), key.encode(), partition=batch.partition)
            self.producer.poll(0)
        self.producer.flush()  # acknowledged before Quix commits the batch's offsets
        self.done += len(items)
        self.last = time.perf_counter()
        if self.done >= self.events:
            self.app.stop()


def _plain(avro_type: object) -> object:
    """An Avro type without its logical type (the same bytes, read as the underlying type)."""
    if isinstance(avro_type, dict) and "logicalType" in avro_type:
        return avro_type["type"]
    return avro_type


def main(argv: list[str]) -> int:
    bootstrap, source, output, group, events, model_dir = argv
    state_dir = tempfile.mkdtemp(prefix="quix-state-")  # Quix keeps a state folder even when nothing uses it
    app = Application(broker_address=bootstrap, consumer_group=group, auto_offset_reset="earliest",
                      commit_every=COMMIT_EVERY, commit_interval=1.0, use_changelog_topics=False, state_dir=state_dir)
    # event times as epoch milliseconds, as streamscore reads them (fastavro would make datetimes of them)
    schema = load_schema("sensor_reading")
    plain = {**schema, "fields": [{k: v for k, v in f.items() if k != "type"} | {"type": _plain(f["type"])}
                                  for f in schema["fields"]]}
    topic = app.topic(source, value_deserializer=TimedAvro(plain), key_deserializer="str")
    sink = ScoringSink(app, bootstrap, output, int(events), Path(model_dir))
    app.dataframe(topic).sink(sink)
    try:
        app.run()
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
    if TimedAvro.first is None or sink.last is None:
        print("no record came", file=sys.stderr)
        return 1
    seconds = sink.last - TimedAvro.first
    print(json.dumps({"events": sink.done, "seconds": round(seconds, 3), "eps": round(sink.done / seconds, 1)}))
    return 0 if sink.done >= int(events) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
