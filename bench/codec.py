"""The compiled Avro codec against fastavro, in process, per record of a 1,000-record batch.

    .venv/bin/python bench/codec.py

Decodes demo sensor readings and encodes predictions both ways, on the same
records in the same run, and prints microseconds per record and the ratio.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from schemas import load_schema
from stream.avro.codec import AvroCodec, AvroEncoder
from stream.avro.decoder import BatchDecoder, column_for
from stream.avro.encoder import BatchEncoder
from stream.pipeline.processor import prediction_bindings
from stream.tools.generators import sensor_events

N = 1000
ROUNDS = 30


def per_record(fn) -> float:
    fn()  # compile or load the kernels first
    started = time.perf_counter()
    for _ in range(ROUNDS):
        fn()
    return (time.perf_counter() - started) / ROUNDS / N * 1e6


def main() -> int:
    sensor = load_schema("sensor_reading")
    records = [r for r, _ in sensor_events(N, 100, seed=3)]
    bodies = [AvroEncoder(sensor).encode(r) for r in records]
    codec = AvroCodec(sensor)
    decoder = BatchDecoder(codec, [column_for(sensor, f["name"]) for f in sensor["fields"]])
    fast_decode = per_record(lambda: decoder.decode(bodies))
    slow_decode = per_record(lambda: [codec.decode(b) for b in bodies])

    prediction = load_schema("prediction")
    classes = ("0", "1")
    encoder = BatchEncoder(prediction, prediction_bindings("sensor-fault", "1", classes))
    rng = np.random.default_rng(0)
    p1 = rng.random(N)
    columns = {"key": [r["sensor_id"] for r in records], "event_time": np.array([r["ts"] for r in records]),
               "source_topic": ["sensor-readings"] * N, "source_partition": np.arange(N) % 8,
               "source_offset": np.arange(N), "score": p1, "label": (p1 > 0.5).astype(np.int64) + 1,
               "scored_at": np.full(N, 1_700_000_000_000), "probability_0": 1 - p1, "probability_1": p1}
    dicts = [{"key": columns["key"][i], "event_time": int(columns["event_time"][i]), "source_topic": "sensor-readings",
              "source_partition": i % 8, "source_offset": i, "model_name": "sensor-fault", "model_version": "1",
              "score": float(p1[i]), "label": classes[int(p1[i] > 0.5)],
              "probabilities": [{"label": "0", "probability": float(1 - p1[i])},
                                {"label": "1", "probability": float(p1[i])}],
              "scored_at": 1_700_000_000_000} for i in range(N)]
    writer = AvroEncoder(prediction)
    assert encoder.encode(N, columns) == [writer.encode(d) for d in dicts], "the two encoders disagree"
    fast_encode = per_record(lambda: encoder.encode(N, columns))
    slow_encode = per_record(lambda: [writer.encode(d) for d in dicts])

    print(f"decode: compiled {fast_decode:.2f} us/record, fastavro {slow_decode:.2f} "
          f"({slow_decode / fast_decode:.1f}x)")
    print(f"encode: compiled {fast_encode:.2f} us/record, fastavro from dicts {slow_encode:.2f} "
          f"({slow_encode / fast_encode:.1f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
