"""Fault scenarios on a real broker: scorer kills, broker restarts, workers joining and dying.

Each scenario pre-produces N sensor events with unique (partition, offset)
ids, runs `streamscore run` as a child process, and hurts it:

- ``kill_scenario``: SIGKILL the scorer K times, restarting it each time;
  each kill comes when the output topic reaches a random share of the
  inputs, so that every kill lands mid-stream;
- ``broker_scenario``: SIGKILL a broker of its own (a second one, on its own
  log dir) while the scorer runs, check that the scorer stays up and reports
  not ready, and restart the broker on the same log dir;
- ``determinism_scenario`` (exactly-once): a live stream scored by one
  worker that becomes three, one of which is then SIGKILLed, leaving two;
  every score must equal that of one worker scoring the same stream
  uninterrupted (``determinism_mismatches``, and the restore times seen).

Then the output topic is read with isolation.level=read_committed and each
input is matched to its predictions (``Outcome``): ``lost`` inputs have
none, ``duplicates`` counts predictions beyond the first.
"""

from __future__ import annotations

import random
import tempfile
import threading
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, TopicPartition

from schemas import load_schema
from stream.avro.codec import AvroEncoder
from stream.kafka.admin import ensure_topics
from stream.tools.chaos.processes import (
    FINISH_IDLE_S,
    FINISH_TIMEOUT_S,
    KEYS,
    PARTITIONS,
    Broker,
    Outcome,
    Scorer,
    SourceReader,
    log_dir,
    prefixed,
    produce_inputs,
    read_all,
    readyz,
    say,
    scorer_env,
    scores_by_source,
    verify,
)
from stream.tools.generators import sensor_events
from stream.tools.simulator import produce_events

__all__ = ["broker_scenario", "determinism_scenario", "kill_scenario"]


def kill_scenario(bootstrap: str, mode: str, model: Path, events: int = 100_000, kills: int = 5,
                  seed: int = 7) -> Outcome:
    """SIGKILL the scorer ``kills`` times at random moments while it works through ``events`` inputs."""
    rng = random.Random(seed)
    topic = f"chaos-kill-{mode.replace('_', '-')}-{uuid.uuid4().hex[:6]}"
    started = time.monotonic()
    positions = produce_inputs(bootstrap, topic, events, seed)
    outcome = Outcome(mode, "kills", inputs=len(positions))
    targets = sorted(rng.uniform(0.05, 0.9) * events for _ in range(kills))
    with tempfile.TemporaryDirectory() as tmp:
        scorer = Scorer(scorer_env(bootstrap, topic, mode, model), log_dir(tmp))
        counter = Consumer({"bootstrap.servers": bootstrap, "group.id": f"count-{topic}"})
        try:
            for k, target in enumerate(targets):
                scorer.start()
                while (count := _output_count(counter, topic + "-out")) < target:
                    if scorer.proc is not None and scorer.proc.poll() is not None:
                        raise RuntimeError(f"scorer exited early ({scorer.proc.returncode}):\n{scorer.log()[-3000:]}")
                    time.sleep(0.02)
                scorer.kill()
                outcome.restore_seconds += scorer.restore_seconds()
                outcome.scorer_kills += 1
                outcome.outputs_at_kills.append(count)
                say(f"{mode}: killed the scorer at {count:,} outputs ({k + 1}/{kills})")
        finally:
            counter.close()
        scorer.start(idle_exit_s=FINISH_IDLE_S)
        code = scorer.wait(timeout_s=FINISH_TIMEOUT_S)
        if code != 0:
            raise RuntimeError(f"the last scorer exited with {code}:\n{scorer.log()[-3000:]}")
        outcome.restore_seconds += scorer.restore_seconds()
    verify(bootstrap, topic, positions, outcome)
    outcome.seconds = round(time.monotonic() - started, 1)
    return outcome


def _output_count(consumer: Consumer, topic: str) -> int:
    """Messages written to ``topic`` so far (committed or not), from its high watermarks."""
    total = 0
    for partition in range(PARTITIONS):
        try:
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=2.0)
        except KafkaException:
            continue  # not created yet
        total += max(high, 0)
    return total


def broker_scenario(mode: str, model: Path, events: int = 50_000, outage_s: float = 6.0,
                    seed: int = 11) -> Outcome:
    """SIGKILL a broker of its own mid-run and restart it on the same log dir; the scorer rides it out."""
    topic = f"chaos-broker-{mode.replace('_', '-')}-{uuid.uuid4().hex[:6]}"
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        broker = Broker(Path(tmp) / "broker")
        try:
            bootstrap = broker.start()
            positions = produce_inputs(bootstrap, topic, events, seed)
            outcome = Outcome(mode, "broker", inputs=len(positions))
            scorer = Scorer(scorer_env(bootstrap, topic, mode, model), log_dir(tmp))
            # One life reads every input once: it stops after exactly that many.
            scorer.start(max_events=len(positions))
            port = scorer.metrics_port()
            counter = Consumer({"bootstrap.servers": bootstrap, "group.id": f"count-{topic}"})
            try:
                while (count := _output_count(counter, topic + "-out")) < events * 0.3:
                    time.sleep(0.02)
            finally:
                counter.close()
            broker.kill()
            say(f"{mode}: killed the broker at {count:,} outputs")
            outcome.not_ready_seen = False
            deadline = time.monotonic() + outage_s
            while time.monotonic() < deadline:
                if readyz(port) == 503:
                    outcome.not_ready_seen = True
                time.sleep(0.5)
            if scorer.proc is not None and scorer.proc.poll() is not None:
                raise RuntimeError(f"the scorer died with the broker ({scorer.proc.returncode}):\n{scorer.log()[-3000:]}")
            broker.start()
            outcome.broker_restarts += 1
            say(f"{mode}: broker back on {bootstrap}")
            code = scorer.wait(timeout_s=FINISH_TIMEOUT_S)
            if code != 0:
                raise RuntimeError(f"the scorer exited with {code}:\n{scorer.log()[-3000:]}")
            outcome.restore_seconds += scorer.restore_seconds()
            verify(bootstrap, topic, positions, outcome)
        finally:
            broker.clean()
    outcome.seconds = round(time.monotonic() - started, 1)
    return outcome


# Determinism scenario: the live rate, and when workers join and one dies (shares of outputs).
DETERMINISM_RATE = 2500.0
JOIN_AT, KILL_AT = 0.15, 0.5


def determinism_scenario(bootstrap: str, model: Path, events: int = 50_000, seed: int = 13,
                         key_ttl_s: float | None = None) -> Outcome:
    """Exactly-once: 1 worker, then 3, then 2 after a SIGKILL, against one uninterrupted worker on the same input.

    With ``key_ttl_s`` (short enough for keys to expire), predictions must
    match in score and in the events their windows held.
    """
    topic = f"chaos-determinism-{uuid.uuid4().hex[:6]}"
    started = time.monotonic()
    ensure_topics({"bootstrap.servers": bootstrap}, {topic: PARTITIONS})
    outcome = Outcome("exactly_once", "determinism", inputs=events)
    feed: dict[str, list[tuple[int, int]]] = {}

    def produce_live() -> None:
        result = produce_events({"bootstrap.servers": bootstrap}, topic, sensor_events(events, KEYS, seed, rate=1000.0),
                                AvroEncoder(load_schema("sensor_reading")), "sensor_id", rate=DETERMINISM_RATE,
                                keep_positions=True, progress=lambda _t: None)
        feed["positions"] = result.positions or []

    def env(run: str, worker: str = "") -> dict[str, str]:
        base = scorer_env(bootstrap, topic, "exactly_once", model)
        # dynamic membership, so that a killed worker's partitions move on
        base.pop("STREAMSCORE_KAFKA__CONSUMER__GROUP_INSTANCE_ID")
        return {**base,
                **prefixed({"kafka__group_id": f"{topic}-{run}", "kafka__output_topic": f"{topic}-{run}-out",
                             "kafka__dead_letter_topic": f"{topic}-{run}-dlq", "drift__topic": f"{topic}-{run}-drift",
                             "processing__transactional_id": f"{topic}-{run}-{worker}",
                             "kafka__consumer__session_timeout_ms": 6000,
                             # a killed worker's open transaction is aborted (and its partitions
                             # restorable) soon after this
                             "kafka__producer__transaction_timeout_ms": 10000,
                             **({} if key_ttl_s is None else {"state__key_ttl_s": key_ttl_s})})}

    with tempfile.TemporaryDirectory() as tmp:
        logs = log_dir(tmp)
        workers = {name: Scorer(env("scaled", name), logs / name) for name in ("a", "b", "c")}
        for w in workers.values():
            w.log_dir.mkdir(parents=True, exist_ok=True)
        feeder = threading.Thread(target=produce_live)
        feeder.start()
        reader = SourceReader(bootstrap, f"{topic}-scaled-out")
        try:
            workers["a"].start()
            reader.wait_for(int(events * JOIN_AT), workers.values())
            workers["b"].start()
            workers["c"].start()
            say(f"determinism: 3 workers from {len(reader.sources):,} outputs")
            reader.wait_for(int(events * KILL_AT), workers.values())
            workers["b"].kill()
            outcome.scorer_kills = 1
            outcome.outputs_at_kills.append(len(reader.sources))
            say(f"determinism: killed a worker at {len(reader.sources):,} outputs; 2 left")
            feeder.join()
            reader.wait_for(events, [workers["a"], workers["c"]], timeout_s=FINISH_TIMEOUT_S)
            for name in ("a", "c"):
                if workers[name].stop() != 0:
                    raise RuntimeError(f"worker {name} did not stop cleanly:\n{workers[name].log()[-3000:]}")
            scaled = reader.finish()
        finally:
            reader.close()
            for w in workers.values():
                if w.proc is not None and w.proc.poll() is None:
                    w.kill()
            feeder.join()
        outcome.restore_seconds = [t for w in workers.values() for t in w.restore_seconds()]
        reference = Scorer(env("reference", "r"), logs / "reference")
        reference.log_dir.mkdir(parents=True, exist_ok=True)
        reference.start(max_events=events)
        if reference.wait(timeout_s=FINISH_TIMEOUT_S) != 0:
            raise RuntimeError(f"the reference scorer failed:\n{reference.log()[-3000:]}")
    expected = scores_by_source(read_all(bootstrap, f"{topic}-reference-out"))
    positions = feed["positions"]
    outcome.outputs = sum(len(v) for v in scaled.values())
    outcome.lost = sum(1 for pos in positions if pos not in scaled)
    outcome.duplicates = sum(len(v) - 1 for v in scaled.values())
    outcome.determinism_mismatches = sum(
        1 for pos in positions if scaled.get(pos) != expected.get(pos) or len(expected.get(pos, [])) != 1)
    if key_ttl_s is not None:
        firsts = sum(1 for scored in expected.values() for _score, held in scored if held == 1)
        outcome.key_returns = firsts - min(KEYS, firsts)
    outcome.seconds = round(time.monotonic() - started, 1)
    return outcome
