"""Window state follows its partition: restarts and rebalances change no prediction (real broker)."""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from features import compute_features
from models import BatchScorer, ModelArtifact
from schemas import load_schema
from stream.avro.codec import AvroCodec
from stream.config import ServiceConfig
from stream.runtime.service import ScoringService
from stream.runtime.wiring import build_service
from stream.state.changelog import MARKER_KEY, OFFSET_HEADER, SPEC_HEADER
from stream.tools.generators import sensor_events
from tests.integration.helpers import produce, read_topic, service_config, unique

pytestmark = pytest.mark.integration

PREDICTION = AvroCodec(load_schema("prediction"))


def _scores(records) -> dict[tuple[int, int], float]:
    out = {}
    for r in records:
        p = PREDICTION.decode(r.value)
        out[(p["source_partition"], p["source_offset"])] = p["score"]
    return out


def _stopped_halfway(bootstrap: str, model: ModelArtifact, guarantee: str, checkpoint_interval_ms: int, seed: int,
                     before_run: Callable[[ScoringService], None] | None = None
                     ) -> tuple[ServiceConfig, list[dict], list[tuple[int, int]]]:
    """6,000 events of 200 sensors on 8 partitions, and a scorer of them stopped after 3,000."""
    topic = unique("halfway")
    records = [r for r, _ in sensor_events(6_000, 200, seed=seed)]
    positions = produce(bootstrap, topic, records, partitions=8)
    config = service_config(bootstrap, model.path, topic, batch__max_size=100, processing__guarantee=guarantee,
                            state__checkpoint_interval_ms=checkpoint_interval_ms)
    first = build_service(config)
    if before_run is not None:
        before_run(first)
    first.run(max_events=3_000)
    assert first.stats.consumed == 3_000
    return config, records, positions


def _differ_from_offline(bootstrap: str, config: ServiceConfig, model: ModelArtifact, records: list[dict],
                         positions: list[tuple[int, int]]) -> int:
    """How many scores on the output topic differ from offline scoring, once each input has exactly one."""
    isolation = "read_committed" if config.processing.guarantee == "exactly_once" else "read_uncommitted"
    scores = _scores(read_topic(bootstrap, config.kafka.output_topic, expected=len(records), isolation=isolation))
    assert set(scores) == set(positions), "every input scored, none twice"
    offline = BatchScorer(model).score(compute_features(config.features, records, "sensor_id", "ts")).score
    return int(np.sum(np.array([scores[pos] for pos in positions]) != offline))


@pytest.mark.parametrize("guarantee, changelog", [
    ("at_least_once", True), ("exactly_once", True), ("at_least_once", False)])
def test_a_restarted_scorer_scores_as_if_it_never_stopped(
        kafka_bootstrap: str, small_model: ModelArtifact, guarantee: str, changelog: bool) -> None:
    """Three runs over one stream; each restart restores the windows its stop saved.

    Without the changelog the same restarts compute features on empty
    windows, and scores differ: the comparison can fail.
    """
    topic = unique("restart")
    records = [r for r, _ in sensor_events(12_000, 200, seed=21)]
    positions = produce(kafka_bootstrap, topic, records, partitions=8)
    config = service_config(kafka_bootstrap, small_model.path, topic, batch__max_size=100,
                            processing__guarantee=guarantee, state__changelog=changelog,
                            state__checkpoint_interval_ms=150)
    for stop_after in (3_000, 4_000):
        service = build_service(config)
        service.run(max_events=stop_after)
        assert service.stats.consumed == stop_after
    build_service(config).run(idle_exit_seconds=3)

    mismatches = _differ_from_offline(kafka_bootstrap, config, small_model, records, positions)
    print(f"{guarantee}, changelog={changelog}: {mismatches} of {len(records)} scores differ from offline")
    if changelog:
        assert mismatches == 0
    else:
        assert mismatches > 100  # the windows started empty twice


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_a_clean_stop_saves_the_state_so_a_restart_reads_nothing_again(
        kafka_bootstrap: str, small_model: ModelArtifact, guarantee: str) -> None:
    """With checkpoints too far apart to run, the stop's own checkpoint carries the windows to the restart.

    Without it the restart would find no checkpoint, read the input again
    from its start, and restore no entity.
    """
    config, records, positions = _stopped_halfway(kafka_bootstrap, small_model, guarantee, 600_000, seed=8)
    topic = config.kafka.input_topics[0]
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": config.kafka.group_id})
    committed = {tp.partition: tp.offset for tp in consumer.committed(
        [TopicPartition(topic, p) for p in range(8)], timeout=10)}
    consumer.close()
    seen = {records[i]["sensor_id"] for i, (p, o) in enumerate(positions) if o < committed[p]}
    second = build_service(config)
    second.run(idle_exit_seconds=3)

    assert second.metrics.registry.get_sample_value("streamscore_state_entities_restored_total") == len(seen)
    assert not second.state.replay.done and not second.state.replay.until, "input was read again for state"
    assert second.stats.consumed == 3_000
    assert _differ_from_offline(kafka_bootstrap, config, small_model, records, positions) == 0


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_a_restart_after_a_stop_that_saved_nothing_replays_from_the_last_checkpoint(
        kafka_bootstrap: str, small_model: ModelArtifact, guarantee: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """As after a crash just past a commit: the stop's own checkpoint is left out.

    The restart restores the last scheduled checkpoint (or none) and reads
    the input again from there to the commit, for state only: scores still
    equal offline scoring, and nothing is produced twice.
    """
    config, records, positions = _stopped_halfway(
        kafka_bootstrap, small_model, guarantee, 150, seed=9,
        before_run=lambda first: monkeypatch.setattr(first, "_save_state", lambda: None))
    second = build_service(config)
    second.run(idle_exit_seconds=3)

    assert second.state.replay.done, "nothing was read again for state"
    assert _differ_from_offline(kafka_bootstrap, config, small_model, records, positions) == 0


def test_scores_are_identical_whether_one_worker_or_a_changing_set_scores_the_stream(
        kafka_bootstrap: str, small_model: ModelArtifact) -> None:
    """Exactly-once, 50,000 events over 8 partitions: 1 worker, then 3, then 2 after a SIGKILL (stream/tools/chaos).

    Keys expire after 2 s of event time (each of the 500 keys has an event
    every 0.5 s on average), so expiry, its tombstones and the partition
    clocks go through the restores too: scores and the events each key's
    windows held must match one uninterrupted worker.
    """
    from stream.tools.chaos import determinism_scenario

    outcome = determinism_scenario(kafka_bootstrap, small_model.path, events=50_000, key_ttl_s=2.0)
    print(f"determinism: {outcome.determinism_mismatches} mismatches, restores {outcome.restore_seconds}, "
          f"killed at {outcome.outputs_at_kills}, {outcome.key_returns} returns after expiry, {outcome.seconds}s")
    assert outcome.scorer_kills == 1 and 0 < outcome.outputs_at_kills[0] < outcome.inputs
    assert (outcome.lost, outcome.duplicates) == (0, 0)
    assert outcome.key_returns is not None and outcome.key_returns > 100, "keys expired and came back"
    assert outcome.determinism_mismatches == 0
    assert outcome.restore_seconds, "partitions moved with their state"


def test_a_detector_record_written_by_someone_else_is_refused_and_never_unpickled(
        kafka_bootstrap: str, small_model: ModelArtifact, tmp_path: Path) -> None:
    topic = unique("planted")
    records = [r for r, _ in sensor_events(4_000, 40, seed=5)]
    produce(kafka_bootstrap, topic, records[:3_000], partitions=2)
    config = service_config(kafka_bootstrap, small_model.path, topic, state__checkpoint_interval_ms=0)
    first = build_service(config)
    first.run(max_events=3_000)
    assert first.stats.consumed == 3_000
    # someone with write access to the state topic plants a marker whose detectors are a pickle that runs code
    planted = tmp_path / "planted"
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": config.kafka.group_id})
    (committed,) = consumer.committed([TopicPartition(topic, 0)], timeout=10)
    consumer.close()
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(config.state_topic, key=MARKER_KEY, value=pickle.dumps(Planted(planted)), partition=0,
                     headers=[(SPEC_HEADER, first.processor.store.fingerprint.encode()),
                              (OFFSET_HEADER, str(committed.offset).encode())])
    assert producer.flush(10) == 0

    produce(kafka_bootstrap, topic, records[3_000:], partitions=2)
    second = build_service(config)
    second.run(idle_exit_seconds=3)
    assert not planted.exists(), "the planted pickle ran"
    assert second.metrics.registry.get_sample_value("streamscore_state_records_refused_total") == 1
    assert second.stats.consumed == 1_000, "scoring went on"


class Planted:
    """Unpickling this creates a folder: proof that code from the state topic ran."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (str(self.path),))


def _changelog(bootstrap: str, topic: str) -> list[tuple[bytes, bytes | None]]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("state-reader"),
                         "enable.partition.eof": True})
    consumer.assign([TopicPartition(topic, 0, 0)])
    out: list[tuple[bytes, bytes | None]] = []
    try:
        while True:
            msg = consumer.poll(10)
            assert msg is not None, "the changelog partition's end never came"
            if msg.error():
                break  # the partition's end
            out.append((msg.key(), msg.value()))
    finally:
        consumer.close()
    return out


def test_an_idle_key_expires_is_tombstoned_and_comes_back_to_empty_windows(
        kafka_bootstrap: str, small_model: ModelArtifact) -> None:
    """One partition, an event every 10 ms of event time; sensor-gone has 10 events, is silent for 30 s, returns."""
    topic = unique("expiry")
    records = [r for r, _ in sensor_events(3_000, 20, seed=8)]
    for i, record in enumerate(records):
        record["ts"] = 1_700_000_000_000 + 10 * i
    for record in [*records[:10], records[-1]]:
        record["sensor_id"] = "sensor-gone"
    produce(kafka_bootstrap, topic, records, partitions=1)
    # a checkpoint (and its expiry sweep) after every batch of at most 2 s of event time: the key is
    # swept while it is gone however fast the run goes (a 100 ms interval was longer than a whole run)
    config = service_config(kafka_bootstrap, small_model.path, topic, state__key_ttl_s=5.0,
                            state__checkpoint_interval_ms=0, batch__max_size=200)
    service = build_service(config)
    service.run(idle_exit_seconds=3)
    assert service.stats.consumed == len(records)

    predictions = {p["source_offset"]: p for p in (PREDICTION.decode(r.value) for r in
                                                  read_topic(kafka_bootstrap, config.kafka.output_topic,
                                                             expected=len(records)))}
    assert [predictions[o]["window_events"] for o in range(10)] == list(range(1, 11))
    assert predictions[len(records) - 1]["key"] == "sensor-gone"
    assert predictions[len(records) - 1]["window_events"] == 1, "back after the ttl: empty windows"
    assert predictions[len(records) - 2]["window_events"] >= 16, "the others hold their windows"

    changelog = [(k, v) for k, v in _changelog(kafka_bootstrap, config.state_topic) if k == b"ksensor-gone"]
    tombstones = [i for i, (_, v) in enumerate(changelog) if v is None]
    assert len(tombstones) == 1 and tombstones[0] > 0, "its windows were saved, then one tombstone while it was gone"
    assert service.metrics.registry.get_sample_value("streamscore_state_keys_expired_total") >= 1
