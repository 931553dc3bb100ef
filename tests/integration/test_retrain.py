"""Training from the topics: the features it trains on are the scorer's own, bit for bit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from confluent_kafka import Producer

from models import BatchScorer, LocalModelStore, ModelArtifact
from schemas import load_schema
from stream.avro.codec import AvroEncoder
from stream.cli import main
from stream.kafka.admin import ensure_topics
from stream.pipeline.shadow import Shadow, ShadowJob
from stream.runtime.wiring import build_service
from stream.tools.dataset import StreamRange, read_training_set
from stream.tools.generators import sensor_events
from tests.integration.helpers import produce, service_config, unique


class RecordingShadow(Shadow):
    """A shadow that keeps every feature matrix the scorer hands it, with each row's position."""

    def __init__(self) -> None:
        super().__init__()
        self.jobs: list[ShadowJob] = []

    def submit(self, job: ShadowJob) -> bool:
        self.jobs.append(job)
        return True


def test_train_from_topics_uses_the_scorers_features_bit_for_bit(
        kafka_bootstrap: str, small_model: ModelArtifact, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    topic = unique("retrain")
    labels_topic = topic + "-labels"
    pairs = list(sensor_events(3000, 30, seed=17))
    positions = produce(kafka_bootstrap, topic, [r for r, _ in pairs], partitions=4)
    ensure_topics({"bootstrap.servers": kafka_bootstrap}, {labels_topic: 1})
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    encoder = AvroEncoder(load_schema("label"))
    for (partition, offset), (_, truth) in zip(positions, pairs):
        producer.produce(labels_topic, encoder.encode({"id": f"{topic}/{partition}/{offset}", "label": str(truth),
                                                       "label_time": 0}))
    assert producer.flush(30) == 0
    config = service_config(kafka_bootstrap, small_model.path, topic, labels__topic=labels_topic,
                            batch__max_size=333, training__params="{ max_iter = 10 }")

    # what the scorer computed: every feature matrix it scored, by (partition, offset)
    service = build_service(config)
    shadow = service.processor.shadow = RecordingShadow()
    shadow.use(BatchScorer(ModelArtifact(small_model.path, small_model.model, {**small_model.manifest, "version": "x"})))
    service.run(max_events=len(pairs), idle_exit_seconds=20)
    scored = {f"{topic}/{p}/{o}": job.features[i]
              for job in shadow.jobs for i, (p, o) in enumerate(zip(job.partitions.tolist(), job.offsets.tolist()))}
    assert len(scored) == len(pairs)

    data = read_training_set(config, StreamRange(), progress=False)
    assert data.events == len(pairs) and len(data.labels) == len(pairs) and data.unlabelled == 0
    assert sorted(data.ids) == sorted(scored)
    for event, row in zip(data.ids, data.features):
        assert row.tobytes() == scored[event].tobytes(), event
    assert np.all(np.diff(data.event_times) >= 0), "rows in event-time order"

    # an offset range: only those offsets, and the manifest says which
    half = StreamRange(from_offset=100, to_offset=500)
    part = read_training_set(config, half, progress=False)
    assert part.offsets == {f"{topic}/{p}": [100, 500] for p in range(4)}
    assert len(part.labels) == 4 * 400

    # the command: trains, registers a version under an alias, records the range and held-out metrics
    store = tmp_path / "store"
    config_file = tmp_path / "config.toml"
    config_file.write_text(Path(config.source).read_text())
    environ = {f"STREAMSCORE_{k}": v for k, v in {
        "KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap, "KAFKA__INPUT_TOPICS": json.dumps([topic]),
        "LABELS__TOPIC": labels_topic, "TRAINING__PARAMS": "{ max_iter = 10 }"}.items()}
    with pytest.MonkeyPatch.context() as env:
        for k, v in environ.items():
            env.setenv(k, v)
        assert main(["train", "--config", str(config_file), "--from-topics", "--from-offset", "100",
                     "--to-offset", "500", "--register", "fault", "--store", str(store), "--alias", "challenger"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["version"] == "1" and summary["aliases"] == {"challenger": "1"}
    manifest = LocalModelStore(store).resolve("fault", "challenger").manifest
    assert manifest["training"]["source"] == "topics"
    assert manifest["training"]["range"] == {"from_offset": 100, "to_offset": 500}
    assert manifest["training"]["labelled"] == 1600
    assert 0.5 < manifest["metrics"]["accuracy"] <= 1.0 and manifest["metrics"]["n_test"] == 320
