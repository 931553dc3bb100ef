"""Model versions swapped while events flow through a real broker, exactly once, with a shadow challenger."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Producer

from models import LocalModelStore, ModelArtifact
from schemas import load_schema
from stream.avro.codec import AvroCodec, AvroEncoder
from stream.cli import main
from stream.kafka.admin import ensure_topics
from stream.runtime.wiring import build_service
from stream.tools.compare import compare, read_outcomes
from stream.tools.generators import sensor_events
from stream.tools.labelled import LabelledFeed
from tests.integration.helpers import (
    live_feed,
    produce,
    read_topic,
    service_config,
    service_environ,
    unique,
    wait_until,
)
from tests.unit.test_lifecycle import variant

PREDICTION = AvroCodec(load_schema("prediction"))
SHADOW = AvroCodec(load_schema("shadow_prediction"))


def test_promotion_refusal_and_rollback_while_events_flow_exactly_once(
        kafka_bootstrap: str, small_model: ModelArtifact, tmp_path: Path) -> None:
    store = LocalModelStore(tmp_path / "store")
    store.register("fault", small_model.path)  # 1
    store.register("fault", small_model.path)  # 2: the same trees, so scores can be compared across the swap
    store.register("fault", variant(small_model, tmp_path / "bad",
                                    features=list(reversed(small_model.feature_names))))  # 3: does not fit the windows
    store.set_alias("fault", "champion", "1")
    store.set_alias("fault", "challenger", "2")
    topic = unique("lifecycle")
    events = [r for r, _ in sensor_events(12_000, 40, seed=8)]
    config = service_config(
        kafka_bootstrap, small_model.path, topic, processing__guarantee="exactly_once",
        model__store=str(store.root), model__name="fault", model__poll_interval_s=0.3,
        model__challenger_alias="challenger", model__shadow_topic=topic + "-shadow",
        batch__max_size=200, batch__max_wait_ms=20)
    positions, feeder = live_feed(kafka_bootstrap, topic, events, backlog=500, partitions=4, rate=1500)
    service = build_service(config)
    runner = threading.Thread(target=service.run, kwargs={"max_events": len(events), "idle_exit_seconds": 30})
    runner.start()
    try:
        def after(n: int) -> None:
            wait_until(lambda: service.stats.consumed >= n, 60, f"{n} events scored")

        after(2000)
        store.promote("fault")  # champion -> 2
        wait_until(lambda: service.processor.model_version == "2", 10, "the promotion to reach the scorer")
        after(5000)
        store.set_alias("fault", "champion", "3")  # refused: its features are not the windows'
        metrics = service.metrics.registry
        wait_until(lambda: metrics.get_sample_value("streamscore_model_refused_total", {
            "role": "champion", "model_version": "3", "reason": "features"}) == 1, 10, "version 3 to be refused")
        assert service.processor.model_version == "2"
        after(7000)
        store.rollback("fault")  # 3 -> 2: what the scorer already runs
        store.rollback("fault")  # 2 -> 1
        wait_until(lambda: service.processor.model_version == "1", 10, "the rollback to reach the scorer")
    finally:
        feeder.join()
        runner.join(timeout=120)
    assert not runner.is_alive()

    out = read_topic(kafka_bootstrap, config.kafka.output_topic, expected=len(events), isolation="read_committed")
    predictions = [PREDICTION.decode(r.value) for r in out]
    by_source = Counter((p["source_partition"], p["source_offset"]) for p in predictions)
    assert len(predictions) == len(events) and set(by_source) == set(positions[:500]) | set(by_source)
    assert max(by_source.values()) == 1, "a prediction twice"
    assert len(by_source) == len(events), "a prediction lost"
    # every prediction names its version; per partition the versions run 1, then 2, then 1 again; never 3
    assert all(p["model_version"] in ("1", "2") for p in predictions)
    for partition in range(4):
        versions = [p["model_version"] for p in sorted(predictions, key=lambda p: p["source_offset"])
                    if p["source_partition"] == partition]
        runs = [v for i, v in enumerate(versions) if i == 0 or v != versions[i - 1]]
        assert runs == ["1", "2", "1"], (partition, runs)
    assert service.metrics.registry.get_sample_value("streamscore_model_swaps_total", {"role": "champion"}) == 2
    # the shadow: version 2 beside the champion while the champion was 1, the same scores (the same trees)
    shadow = [SHADOW.decode(r.value) for r in read_topic(kafka_bootstrap, topic + "-shadow", expected=1,
                                                         isolation="read_committed", timeout_s=10)]
    assert shadow and all(s["role"] == "challenger" and s["model_version"] == "2" for s in shadow)
    champion = {(p["source_partition"], p["source_offset"]): p for p in predictions}
    for s in shadow:
        p = champion[(s["source_partition"], s["source_offset"])]
        assert p["model_version"] == "1" and p["score"] == s["score"]
    assert len({(s["source_partition"], s["source_offset"]) for s in shadow}) == len(shadow)


def test_compare_judges_champion_and_challenger_on_the_same_labels(
        kafka_bootstrap: str, small_model: ModelArtifact, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = LocalModelStore(tmp_path / "store")
    store.register("fault", small_model.path)
    store.register("fault", small_model.path)
    store.set_alias("fault", "champion", "1")
    store.set_alias("fault", "challenger", "2")
    topic = unique("compare")
    labels_topic = topic + "-labels"
    pairs = list(sensor_events(3000, 30, seed=4))
    positions = produce(kafka_bootstrap, topic, [r for r, _ in pairs], partitions=2)
    ensure_topics({"bootstrap.servers": kafka_bootstrap}, {labels_topic: 1})
    settings = {"model__store": str(store.root), "model__name": "fault", "model__challenger_alias": "challenger",
                "model__shadow_topic": topic + "-shadow", "labels__topic": labels_topic, "batch__max_size": 100}
    config = service_config(kafka_bootstrap, small_model.path, topic, **settings)
    service = build_service(config)
    # one label in two, so that "labelled" differs from "predictions"
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    encoder = AvroEncoder(load_schema("label"))
    for (partition, offset), (_, truth) in list(zip(positions, pairs))[::2]:
        producer.produce(labels_topic, encoder.encode({"id": f"{topic}/{partition}/{offset}", "label": str(truth),
                                                       "label_time": 0}))
    assert producer.flush(30) == 0
    service.run(max_events=len(pairs), idle_exit_seconds=20)

    champion, challenger, truth = read_outcomes(config)
    assert len(champion) == 3000 and len(truth) == 1500
    result = compare(champion, challenger, truth)
    rows = [(r["role"], r["version"], r["predictions"], r["labelled"]) for r in result.rows]
    assert rows[0] == ("champion", "1", 3000, 1500) and rows[1][:2] == ("challenger", "2")
    (paired,) = result.paired
    # the same trees: the same accuracy on the same events, and full agreement
    assert paired["version"] == "2" and paired["agreement"] == 1.0
    assert paired["champion_metric"] == paired["challenger_metric"] > 0.8
    # the command prints the table and plots
    png = tmp_path / "compare.png"
    environ = service_environ(kafka_bootstrap, small_model.path, topic, **settings)
    with pytest.MonkeyPatch.context() as env:
        for k, v in environ.items():
            env.setenv(k, v)
        assert main(["models", "compare", "--config", config.source, "--png", str(png)]) == 0
    out = capsys.readouterr().out
    assert "champion    1" in out and "challenger 2" in out and png.stat().st_size > 10_000


def test_an_error_alarm_retrains_from_the_topics_and_registers_a_challenger(
        kafka_bootstrap: str, small_model: ModelArtifact, tmp_path: Path) -> None:
    store = LocalModelStore(tmp_path / "store")
    store.register("fault", small_model.path)
    store.set_alias("fault", "champion", "1")
    topic = unique("retrain-alarm")
    labels_topic = topic + "-labels"
    ensure_topics({"bootstrap.servers": kafka_bootstrap}, {topic: 2, labels_topic: 1})
    concept_at = 4000
    start_ms = int(time.time() * 1000)
    events = sensor_events(60_000, 40, seed=12, rate=2000, start_ms=start_ms, concept_at=concept_at)
    config = service_config(
        kafka_bootstrap, small_model.path, topic, labels__topic=labels_topic, model__store=str(store.root),
        model__name="fault", model__retrain_on_alarm=True, model__retrain_after_events=3000,
        batch__max_wait_ms=20)
    service = build_service(config)
    feed = LabelledFeed(kafka_bootstrap, topic, labels_topic, events, "sensor_id", rate=2000, label_delay_s=0.2)
    runner = threading.Thread(target=service.run)
    runner.start()
    feed.start()
    registry = service.metrics.registry
    try:
        wait_until(lambda: registry.get_sample_value("streamscore_retrains_total", {"outcome": "registered"}), 120,
                   "a retrained challenger")
    finally:
        service.stop()
        runner.join(timeout=60)
        feed.producer.purge()
    version = store.resolve("fault", "challenger")
    training = version.manifest["training"]
    # trained on what came after the alarm, which came after the change, with the scorer's own labels
    assert training["source"] == "topics"
    assert training["range"]["from_time_ms"] >= start_ms + concept_at * 1000 // 2000
    assert training["labelled"] >= 2000
    assert version.manifest["metrics"]["accuracy"] > 0.9
    assert registry.get_sample_value("streamscore_retrains_total", {"outcome": "registered"}) == 1
    assert service.processor.model_version == "1", "a retrained version is a challenger, never live untested"


def test_a_promotion_reaches_every_worker_of_the_group(
        kafka_bootstrap: str, small_model: ModelArtifact, tmp_path: Path) -> None:
    store = LocalModelStore(tmp_path / "store")
    store.register("fault", small_model.path)
    store.register("fault", small_model.path)
    store.set_alias("fault", "champion", "1")
    topic = unique("workers")
    events = [r for r, _ in sensor_events(8000, 40, seed=2)]
    _, feeder = live_feed(kafka_bootstrap, topic, events, backlog=200, partitions=4, rate=800)
    config = service_config(kafka_bootstrap, small_model.path, topic, model__store=str(store.root),
                            model__name="fault", model__poll_interval_s=1.0, batch__max_wait_ms=20)
    workers = [build_service(config) for _ in range(2)]
    runners = [threading.Thread(target=w.run, kwargs={"idle_exit_seconds": 10}) for w in workers]
    for r in runners:
        r.start()
    try:
        wait_until(lambda: all(w.source.assigned for w in workers), 60, "both workers to get partitions")
        store.promote("fault", "champion", "champion")  # no move: nothing happens
        store.set_alias("fault", "champion", "2")
        moved = time.monotonic()
        wait_until(lambda: all(w.processor.model_version == "2" for w in workers), 10, "both workers on version 2")
        # within the poll interval, give or take the batch that was being scored
        assert time.monotonic() - moved < config.model.poll_interval_s + 1.0
    finally:
        feeder.join()
        for r in runners:
            r.join(timeout=60)
    assert all(w.stats.consumed for w in workers), "both workers scored"
