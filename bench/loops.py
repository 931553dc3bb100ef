"""The reference loops of bench/throughput.py, each run in a child process.

    python bench/loops.py ceiling TOPIC N   # consume and decode only
    python bench/loops.py naive TOPIC N     # per event: poll, decode, features, one-row predict_proba, produce
    python bench/loops.py feed TOPIC N      # a live feed's arrival age at a plain consumer, no scoring

Settings come from the sensor example plus STREAMSCORE_* variables, as for
the service. Prints one JSON line: events, seconds, eps (ceiling, naive), or
the arrival age of each event in milliseconds (feed).
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from pathlib import Path

import numpy as np
from confluent_kafka import Consumer, Producer

from features import FeatureStore
from models import ModelArtifact
from models.scorer import limit_model_threads
from stream.avro.codec import AvroCodec, AvroEncoder
from stream.config import load_config
from stream.kafka.admin import ensure_topics
from stream.kafka.sink import PRODUCER_DEFAULTS
from stream.kafka.source import CONSUMER_DEFAULTS

ROOT = Path(__file__).resolve().parents[1]


def ceiling(config, topic: str, n: int) -> dict:
    consumer = Consumer({**CONSUMER_DEFAULTS, "bootstrap.servers": config.kafka.bootstrap_servers,
                         "group.id": f"ceiling-{uuid.uuid4().hex[:6]}", "enable.auto.commit": False})
    consumer.subscribe([topic])
    codec = AvroCodec(config.reader_schema)
    done, started = 0, None
    while done < n:
        for msg in consumer.consume(num_messages=min(10_000, n - done), timeout=1.0):
            if msg.error():
                continue
            if started is None:
                started = time.perf_counter()
            codec.decode(msg.value())
            done += 1
    seconds = time.perf_counter() - started
    consumer.close()
    return {"events": done, "seconds": seconds, "eps": done / seconds}


def naive(config, topic: str, n: int) -> dict:
    """What a first version of such a service does: everything one event at a time."""
    base = {"bootstrap.servers": config.kafka.bootstrap_servers}
    ensure_topics(base, {config.kafka.output_topic: config.kafka.topic_partitions})
    consumer = Consumer({**CONSUMER_DEFAULTS, **base, "group.id": f"naive-{uuid.uuid4().hex[:6]}"})
    consumer.subscribe([topic])
    producer = Producer({**PRODUCER_DEFAULTS, **base})
    codec = AvroCodec(config.reader_schema)
    encoder = AvroEncoder(config.output_schema)
    artifact = ModelArtifact.load(Path(config.model.path), config.features)
    limits = limit_model_threads(config.model.threads)  # the same setting as the service  # noqa: F841
    model = artifact.model
    classes = [str(c) for c in model.classes_]
    store = FeatureStore(config.features)
    fields = config.features.fields
    done, started = 0, None
    while done < n:
        msg = consumer.poll(1.0)
        if msg is None or msg.error():
            continue
        if started is None:
            started = time.perf_counter()
        record = codec.decode(msg.value())
        row = store.update(record["sensor_id"], record["ts"], [record[f] for f in fields])
        proba = model.predict_proba(np.asarray([row]))[0]
        value = encoder.encode({
            "key": record["sensor_id"], "event_time": record["ts"], "source_topic": msg.topic(),
            "source_partition": msg.partition(), "source_offset": msg.offset(), "model_name": artifact.name,
            "model_version": artifact.version, "score": float(proba[1]), "label": classes[int(np.argmax(proba))],
            "probabilities": [{"label": c, "probability": float(p)} for c, p in zip(classes, proba)],
            "scored_at": int(time.time() * 1000),
        })
        producer.produce(config.kafka.output_topic, value=value, key=record["sensor_id"].encode())
        producer.poll(0)
        done += 1
    if producer.flush(60):
        raise RuntimeError("the naive loop's outputs were not all acknowledged")
    seconds = time.perf_counter() - started
    consumer.close()
    return {"events": done, "seconds": seconds, "eps": done / seconds}


def feed(config, topic: str, n: int) -> dict:
    """How old each event of a live feed is when a plain consumer has it: the floor under end-to-end latency.

    The consumer uses the service's consumer defaults and takes whatever has
    arrived without waiting for a batch; age is receive time minus the
    Kafka timestamp (the load generator's create time). Its group is the
    topic's and it commits at the end, so a second start reads on from there.
    """
    consumer = Consumer({**CONSUMER_DEFAULTS, "bootstrap.servers": config.kafka.bootstrap_servers,
                         "group.id": f"feed-{topic}", "enable.auto.commit": False})
    consumer.subscribe([topic])
    while not consumer.assignment():
        consumer.poll(0.1)
    print("assigned", file=sys.stderr, flush=True)
    ages = np.empty(n)
    done = 0
    while done < n:
        for msg in consumer.consume(num_messages=n - done, timeout=0.002):
            if msg.error():
                continue
            ages[done] = time.time() * 1000.0 - msg.timestamp()[1]
            done += 1
    consumer.commit(asynchronous=False)
    consumer.close()
    return {"events": done, "ages_ms": ages.round(2).tolist()}


def main() -> int:
    mode, topic, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    config = load_config(ROOT / "examples" / "sensor.toml", os.environ)
    result = {"ceiling": ceiling, "naive": naive, "feed": feed}[mode](config, topic, n)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
