"""Faults on a real broker: scorer kills, broker restarts, slow models, shutdown (the registry: test_registry.py).

The kill and broker scenarios are stream/tools/chaos's (`make chaos` runs them
too and writes bench/results/chaos.json).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from models import BatchScorer, ModelArtifact
from schemas import load_schema
from stream.avro.codec import AvroCodec
from stream.runtime.wiring import build_service
from stream.tools.chaos import broker_scenario, kill_scenario
from stream.tools.generators import sensor_events
from tests.integration.helpers import (
    ROOT,
    live_feed,
    produce,
    read_topic,
    service_config,
    service_environ,
    unique,
    wait_until,
)

pytestmark = pytest.mark.integration

PREDICTION = AvroCodec(load_schema("prediction"))


def _sources(records, codec: AvroCodec = PREDICTION) -> Counter:
    """How many predictions each source (partition, offset) has."""
    return Counter((p["source_partition"], p["source_offset"]) for p in (codec.decode(r.value) for r in records))


def test_at_least_once_loses_nothing_when_the_scorer_is_killed(
        kafka_bootstrap: str, small_model: ModelArtifact, record_property) -> None:
    outcome = kill_scenario(kafka_bootstrap, "at_least_once", small_model.path, events=100_000, kills=5)
    record_property("duplicates", outcome.duplicates)
    print(f"at-least-once, 5 kills: {outcome.duplicates} duplicates of {outcome.inputs} inputs")
    assert outcome.scorer_kills == 5
    assert all(0 < n < outcome.inputs for n in outcome.outputs_at_kills), "every kill lands mid-stream"
    assert outcome.lost == 0 and outcome.outputs >= outcome.inputs
    assert outcome.outputs == outcome.inputs + outcome.duplicates - outcome.dead_letters
    assert outcome.order_held


def test_exactly_once_gives_one_prediction_per_input_across_scorer_kills(
        kafka_bootstrap: str, small_model: ModelArtifact) -> None:
    outcome = kill_scenario(kafka_bootstrap, "exactly_once", small_model.path, events=100_000, kills=5)
    assert outcome.scorer_kills == 5
    assert all(0 < n < outcome.inputs for n in outcome.outputs_at_kills), "every kill lands mid-stream"
    assert (outcome.lost, outcome.duplicates, outcome.dead_letters) == (0, 0, 0)
    assert outcome.outputs == outcome.inputs == 100_000
    assert outcome.order_held


@pytest.mark.parametrize("mode", ["at_least_once", "exactly_once"])
def test_the_scorer_rides_out_a_broker_restart(small_model: ModelArtifact, mode: str) -> None:
    outcome = broker_scenario(mode, small_model.path, events=30_000)
    assert outcome.broker_restarts == 1
    assert outcome.not_ready_seen, "/readyz answered ready while the broker was away"
    assert outcome.lost == 0 and outcome.order_held
    if mode == "exactly_once":
        assert outcome.duplicates == 0 and outcome.outputs == outcome.inputs


class SlowScorer(BatchScorer):
    """Blocks once, on its second model call, for longer than max.poll.interval.ms."""

    def __init__(self, artifact: ModelArtifact, seconds: float) -> None:
        super().__init__(artifact)
        self.seconds = seconds
        self.calls = 0

    def score(self, features):
        self.calls += 1
        if self.calls == 2:
            time.sleep(self.seconds)
        return super().score(features)


def test_a_model_call_longer_than_max_poll_interval_does_not_evict_the_consumer(
        kafka_bootstrap: str, small_model: ModelArtifact, caplog: pytest.LogCaptureFixture) -> None:
    topic = unique("slow")
    events = [r for r, _ in sensor_events(3000, 30, seed=12)]
    positions = produce(kafka_bootstrap, topic, events, partitions=4)
    config = service_config(kafka_bootstrap, small_model.path, topic, batch__max_size=500,
                            kafka__consumer__session_timeout_ms=6000,
                            kafka__consumer__max_poll_interval_ms=6000)
    service = build_service(config)
    service.processor.scorer = SlowScorer(small_model, seconds=9.0)  # 1.5x max.poll.interval.ms
    caplog.set_level(logging.INFO, logger="stream")
    started = time.monotonic()
    stats = service.run(max_events=3000, idle_exit_seconds=20)
    assert time.monotonic() - started > 9.0 and service.processor.scorer.calls >= 2

    assert stats.consumed == 3000 and stats.predictions == 3000
    # evicted, the member would lose its partitions and be assigned them again
    # (a revoke at the end is the consumer closing)
    assert "lost " not in caplog.text, "the member left its group"
    assert sum(r.getMessage().startswith("assigned") for r in caplog.records) == 1
    sources = _sources(read_topic(kafka_bootstrap, config.kafka.output_topic, expected=3000))
    assert set(sources) == set(positions) and max(sources.values()) == 1
    assert "pausing the consumer meanwhile" in caplog.text


def test_sigterm_in_exactly_once_mode_commits_the_batch_and_exits_0_in_time(
        kafka_bootstrap: str, small_model: ModelArtifact) -> None:
    topic = unique("sigterm-eos")
    events = [r for r, _ in sensor_events(20_000, 20, seed=13)]
    positions, feeder = live_feed(kafka_bootstrap, topic, events, 2000, partitions=2, rate=3000.0)
    timeout_s = 20.0
    settings = {"batch__max_size": 50, "processing__guarantee": "exactly_once",
                "processing__transactional_id": topic, "processing__shutdown_timeout_s": timeout_s}
    config = service_config(kafka_bootstrap, small_model.path, topic, **settings)
    env = {**os.environ, **service_environ(kafka_bootstrap, small_model.path, topic, **settings)}
    command = [sys.executable, "-m", "stream.cli", "run", "--config", str(ROOT / "examples" / "sensor.toml")]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    wait_until(lambda: read_topic(kafka_bootstrap, config.kafka.output_topic, 1, timeout_s=1,
                                  isolation="read_committed"), 60, "a first committed prediction")
    signalled = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    assert time.monotonic() - signalled < timeout_s
    feeder.join()

    first = read_topic(kafka_bootstrap, config.kafka.output_topic, expected=1, timeout_s=10, isolation="read_committed")
    sources = _sources(first)
    assert 0 < len(first) < len(events) and max(sources.values()) == 1
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": config.kafka.group_id})
    committed = {tp.partition: tp.offset for tp in consumer.committed([TopicPartition(topic, p) for p in range(2)],
                                                                      timeout=10)}
    consumer.close()
    last = {p: max(o for (pp, o) in sources if pp == p) for p in {p for p, _ in sources}}
    assert {p: o for p, o in committed.items() if o >= 0} == {p: o + 1 for p, o in last.items()}

    # the next start picks up exactly where the committed offsets are
    second = subprocess.run([*command, "--idle-exit-seconds", "5"], env=env, capture_output=True, text=True,
                            cwd=ROOT, timeout=120)
    assert second.returncode == 0, second.stderr[-2000:]
    everything = _sources(read_topic(kafka_bootstrap, config.kafka.output_topic, expected=len(events),
                                     isolation="read_committed"))
    assert len(everything) == len(events) and max(everything.values()) == 1
    assert set(positions) <= set(everything)


def test_workers_share_the_partitions_of_one_group(kafka_bootstrap: str, small_model: ModelArtifact,
                                                   tmp_path: Path) -> None:
    topic = unique("workers")
    events = [r for r, _ in sensor_events(20_000, 200, seed=15)]
    # live input while the second worker joins and takes partitions over
    _, feeder = live_feed(kafka_bootstrap, topic, events, 2000, partitions=8, rate=1800.0)
    config = service_config(kafka_bootstrap, small_model.path, topic)
    env = {**os.environ, **service_environ(kafka_bootstrap, small_model.path, topic)}
    log = tmp_path / "workers.log"

    def assigned() -> set[str]:
        return {line.split(" ")[2] for line in log.read_text().splitlines()
                if " stream.kafka.source: assigned " in line and "assigned nothing" not in line}

    # Stopped by SIGTERM once both workers hold partitions and every input is scored, rather than by
    # an idle exit, whose clock a slow start or a late two-phase (cooperative) rebalance can outrun.
    with log.open("w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "stream.cli", "run", "--config",
                                 str(ROOT / "examples" / "sensor.toml"), "--workers", "2"],
                                env=env, stderr=stderr, text=True, cwd=ROOT)
        try:
            try:
                wait_until(lambda: assigned() == {"worker-0", "worker-1"}, 120, "both workers holding partitions")
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{log.read_text()[-6000:]}") from exc
            sources = _sources(read_topic(kafka_bootstrap, config.kafka.output_topic, expected=len(events)))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    feeder.join()
    assert proc.returncode == 0, log.read_text()[-3000:]
    assert len(sources) == len(events), "every input scored"
