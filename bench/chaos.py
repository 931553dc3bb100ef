"""Fault scenarios on a real broker: scorer kills and broker restarts, in both delivery modes.

    scripts/local-kafka with .venv/bin/python bench/chaos.py [--events N] [--kills K] [--determinism-events N]

Each scenario pre-produces N sensor events with unique (partition, offset)
ids, runs `streamscore run` as a child process, and hurts it:

- "kills": SIGKILL the scorer K times, restarting it each time; each kill
  comes when the output topic reaches a random share of the inputs, so that
  every kill lands mid-stream;
- "broker": SIGKILL a broker of its own (a second one, on its own log dir)
  while the scorer runs, check that the scorer stays up and reports not
  ready, and restart the broker on the same log dir;
- "determinism" (exactly-once): a live stream scored by one worker that
  becomes three, one of which is then SIGKILLed, leaving two; every score
  must equal that of one worker scoring the same stream uninterrupted
  (`determinism_mismatches`, and the state restore times seen).

Then the output topic is read with isolation.level=read_committed and each
input is matched to its predictions: `lost` inputs have none, `duplicates`
counts predictions beyond the first. Writes bench/results/chaos.json (per
mode and scenario: inputs, outputs, lost, duplicates, scorer kills, broker
restarts, whether per-key order held). The integration tests in
tests/integration/test_faults.py run the same scenarios and assert on them.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from confluent_kafka import Consumer, KafkaException, TopicPartition  # noqa: E402

from bench.throughput import MODEL, broker_with_model, env_for  # noqa: E402
from schemas import load_schema  # noqa: E402
from stream.avro.codec import AvroCodec, AvroEncoder  # noqa: E402
from stream.kafka.admin import ensure_topics  # noqa: E402
from stream.tools.generators import sensor_events  # noqa: E402
from stream.tools.simulator import produce_events  # noqa: E402

CONFIG = ROOT / "examples" / "sensor.toml"
RESULTS = ROOT / "bench" / "results"
LOCAL_KAFKA = ROOT / "scripts" / "local-kafka"
MODES = ("at_least_once", "exactly_once")
PREDICTION = AvroCodec(load_schema("prediction"))
PARTITIONS = 8
KEYS = 500
# Small batches, so that a run lasts long enough to be killed several times.
BATCH_SIZE = 100
START_TIMEOUT_S = 90.0
FINISH_IDLE_S = 8.0
FINISH_TIMEOUT_S = 120.0


def say(text: str) -> None:
    print(f"chaos: {text}", file=sys.stderr, flush=True)


@dataclass
class Outcome:
    """What a scenario did and what came out of it."""

    mode: str
    scenario: str
    inputs: int
    outputs: int = 0
    lost: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    scorer_kills: int = 0
    outputs_at_kills: list[int] = field(default_factory=list)
    broker_restarts: int = 0
    order_held: bool = True
    not_ready_seen: bool | None = None  # broker scenario: /readyz said 503 while the broker was away
    determinism_mismatches: int | None = None  # determinism scenario: sources whose score is not the reference's
    restore_seconds: list[float] = field(default_factory=list)  # state reads seen in the scorers' logs (per assignment)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


class Scorer:
    """`streamscore run` in a child process, with its stderr in a file."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None
        self.lives = 0

    def start(self, idle_exit_s: float | None = None, max_events: int | None = None) -> None:
        self.lives += 1
        self.log_path = self.log_dir / f"scorer-{self.lives}.log"
        args = [sys.executable, "-m", "stream.cli", "run", "--config", str(CONFIG)]
        if idle_exit_s is not None:
            args += ["--idle-exit-seconds", str(idle_exit_s)]
        if max_events is not None:
            args += ["--max-events", str(max_events)]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(args, env=self.env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def wait_for(self, text: str, timeout_s: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while text not in self.log():
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"scorer exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"no {text!r} from the scorer within {timeout_s:.0f}s:\n{self.log()[-3000:]}")
            time.sleep(0.1)

    def metrics_port(self) -> int:
        marker = "serving /metrics, /healthz and /readyz on port "
        self.wait_for(marker)
        return int(self.log().split(marker, 1)[1].split()[0])

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM, and the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout_s)

    def restore_seconds(self) -> list[float]:
        """How long each state restore took, from the log."""
        return [float(line.rsplit(" in ", 1)[1].split("s:")[0]) for line in self.log().splitlines()
                if " state records of " in line]

    def wait(self, timeout_s: float) -> int:
        """The exit code; RuntimeError with the log's tail if it does not exit in time (it is killed)."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGUSR1)  # the stacks of every thread, into the log
            time.sleep(1.0)
            self.kill()
            raise RuntimeError(f"the scorer did not finish within {timeout_s:.0f}s:\n{self.log()[-4000:]}") from None


class Broker:
    """A broker of this scenario's own (scripts/local-kafka with a private run folder), to kill and restart."""

    def __init__(self, run_dir: Path) -> None:
        self.env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
        self.env["LOCAL_KAFKA_RUN"] = str(run_dir)
        self.bootstrap = ""

    def start(self) -> str:
        out = subprocess.run([str(LOCAL_KAFKA), "start"], env=self.env, capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"scripts/local-kafka start failed:\n{out.stderr[-3000:]}")
        bootstrap = out.stdout.strip().splitlines()[-1].split("=", 1)[1]
        if self.bootstrap and bootstrap != self.bootstrap:
            raise RuntimeError(f"the broker came back on {bootstrap}, not {self.bootstrap}: its log dir was not reused")
        self.bootstrap = bootstrap
        return bootstrap

    def kill(self) -> None:
        subprocess.run([str(LOCAL_KAFKA), "kill"], env=self.env, check=True, capture_output=True)

    def clean(self) -> None:
        subprocess.run([str(LOCAL_KAFKA), "clean"], env=self.env, capture_output=True)


def scorer_env(bootstrap: str, topic: str, mode: str, model: Path) -> dict[str, str]:
    """The scorer of ``topic`` (outputs to ``<topic>-out``, ``-dlq``, ``-drift``) in ``mode``."""
    settings: dict[str, Any] = {
        "model__path": model, "batch__max_size": BATCH_SIZE, "processing__guarantee": mode,
        "metrics__enabled": "true", "metrics__host": "127.0.0.1", "metrics__port": 0, "log_level": "INFO",
        # A restarted process takes its predecessor's place in the group at once
        # (static membership) instead of waiting for its session to time out.
        "kafka__consumer__group_instance_id": topic + "-scorer",
    }
    if mode == "exactly_once":
        settings["processing__transactional_id"] = topic + "-scorer"
    return env_for(bootstrap, topic, topic, **settings)


def produce_inputs(bootstrap: str, topic: str, events: int, seed: int) -> list[tuple[int, int]]:
    """Pre-produce ``events`` sensor events; their (partition, offset) positions are the inputs' ids."""
    ensure_topics({"bootstrap.servers": bootstrap}, {topic: PARTITIONS})
    result = produce_events({"bootstrap.servers": bootstrap}, topic,
                            sensor_events(events, KEYS, seed, rate=1000.0),
                            AvroEncoder(load_schema("sensor_reading")), "sensor_id",
                            keep_positions=True, progress=lambda _t: None)
    assert result.positions is not None
    return result.positions


def read_all(bootstrap: str, topic: str, settle_s: float = 3.0, timeout_s: float = 120.0) -> list[Any]:
    """Every committed record of ``topic``, in partition order; stops once nothing new came for ``settle_s``."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"verify-{uuid.uuid4().hex[:8]}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "isolation.level": "read_committed"})
    consumer.subscribe([topic])
    out = []
    deadline = time.monotonic() + timeout_s
    last_new = time.monotonic()
    try:
        while time.monotonic() < deadline and time.monotonic() - last_new < settle_s:
            batch = [m for m in consumer.consume(num_messages=5000, timeout=0.5) if m.error() is None]
            if batch:
                out.extend(batch)
                last_new = time.monotonic()
    finally:
        consumer.close()
    return out


def verify(bootstrap: str, topic: str, positions: list[tuple[int, int]], outcome: Outcome) -> None:
    """Match every input to its predictions (and dead letters); fill counts and the order check."""
    predictions = read_all(bootstrap, topic + "-out")
    dead = read_all(bootstrap, topic + "-dlq", settle_s=1.0)
    seen: dict[tuple[int, int], int] = defaultdict(int)
    by_key: dict[bytes, list[tuple[int, int]]] = defaultdict(list)
    for msg in sorted(predictions, key=lambda m: (m.partition(), m.offset())):
        p = PREDICTION.decode(msg.value())
        source = (p["source_partition"], p["source_offset"])
        seen[source] += 1
        by_key[msg.key()].append(source)
    for msg in dead:
        headers = dict(msg.headers() or [])
        source = (int(headers["streamscore.errors.partition"]), int(headers["streamscore.errors.offset"]))
        seen[source] += 1
    outcome.outputs = len(predictions)
    outcome.dead_letters = len(dead)
    outcome.lost = sum(1 for pos in positions if seen.get(pos, 0) == 0)
    outcome.duplicates = sum(n - 1 for n in seen.values() if n > 1)
    # Per key, inputs are scored in offset order: ignoring repeats of what was
    # already seen (at-least-once replays), source offsets only go up.
    for sources in by_key.values():
        done: set[tuple[int, int]] = set()
        last = -1
        for partition_offset in sources:
            if partition_offset in done:
                continue
            done.add(partition_offset)
            if partition_offset[1] < last:
                outcome.order_held = False
                break
            last = partition_offset[1]


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
        scorer = Scorer(scorer_env(bootstrap, topic, mode, model), _log_dir(tmp))
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
            scorer = Scorer(scorer_env(bootstrap, topic, mode, model), _log_dir(tmp))
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
                if _readyz(port) == 503:
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


def determinism_scenario(bootstrap: str, model: Path, events: int = 50_000, seed: int = 13) -> Outcome:
    """Exactly-once: 1 worker, then 3, then 2 after a SIGKILL, against one uninterrupted worker on the same input."""
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
                **_prefixed({"kafka__group_id": f"{topic}-{run}", "kafka__output_topic": f"{topic}-{run}-out",
                             "kafka__dead_letter_topic": f"{topic}-{run}-dlq", "drift__topic": f"{topic}-{run}-drift",
                             "processing__transactional_id": f"{topic}-{run}-{worker}",
                             "kafka__consumer__session_timeout_ms": 6000,
                             # a killed worker's open transaction is aborted (and its partitions
                             # restorable) soon after this
                             "kafka__producer__transaction_timeout_ms": 10000})}

    with tempfile.TemporaryDirectory() as tmp:
        logs = _log_dir(tmp)
        workers = {name: Scorer(env("scaled", name), logs / name) for name in ("a", "b", "c")}
        for w in workers.values():
            w.log_dir.mkdir(parents=True, exist_ok=True)
        feeder = threading.Thread(target=produce_live)
        feeder.start()
        reader = _SourceReader(bootstrap, f"{topic}-scaled-out")
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
    expected = _scores(read_all(bootstrap, f"{topic}-reference-out"))
    positions = feed["positions"]
    outcome.outputs = sum(len(v) for v in scaled.values())
    outcome.lost = sum(1 for pos in positions if pos not in scaled)
    outcome.duplicates = sum(len(v) - 1 for v in scaled.values())
    outcome.determinism_mismatches = sum(
        1 for pos in positions if scaled.get(pos) != expected.get(pos) or len(expected.get(pos, [])) != 1)
    outcome.seconds = round(time.monotonic() - started, 1)
    return outcome


class _SourceReader:
    """Reads a prediction topic (read_committed) as it fills: the scores of each source (partition, offset)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"verify-{uuid.uuid4().hex[:8]}",
                                   "auto.offset.reset": "earliest", "enable.auto.commit": False,
                                   "isolation.level": "read_committed"})
        self._consumer.subscribe([topic])
        self.sources: dict[tuple[int, int], list[float]] = defaultdict(list)

    def read(self, timeout_s: float = 0.2) -> int:
        got = [m for m in self._consumer.consume(num_messages=5000, timeout=timeout_s) if m.error() is None]
        _add_scores(self.sources, got)
        return len(got)

    def wait_for(self, count: int, scorers: Any, timeout_s: float = START_TIMEOUT_S) -> None:
        """Until ``count`` sources have a prediction; RuntimeError if a scorer exits or time runs out."""
        deadline = time.monotonic() + timeout_s
        while len(self.sources) < count:
            self.read()
            for s in scorers:
                if s.proc is not None and s.proc.poll() is not None and s.proc.returncode != -signal.SIGKILL:
                    raise RuntimeError(f"a scorer exited ({s.proc.returncode}):\n{s.log()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(self.sources):,} of {count:,} outputs after {timeout_s:.0f}s")

    def finish(self, settle_s: float = 3.0) -> dict[tuple[int, int], list[float]]:
        """Everything, once nothing new came for ``settle_s``."""
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < settle_s:
            if self.read(0.5):
                quiet_since = time.monotonic()
        return dict(self.sources)

    def close(self) -> None:
        self._consumer.close()


def _scores(messages: list[Any]) -> dict[tuple[int, int], list[float]]:
    """The scores of each source (partition, offset) among prediction messages."""
    out: dict[tuple[int, int], list[float]] = defaultdict(list)
    _add_scores(out, messages)
    return dict(out)


def _add_scores(into: dict[tuple[int, int], list[float]], messages: list[Any]) -> None:
    for msg in messages:
        p = PREDICTION.decode(msg.value())
        into[(p["source_partition"], p["source_offset"])].append(p["score"])


def _prefixed(settings: dict[str, Any]) -> dict[str, str]:
    return {f"STREAMSCORE_{k.upper()}": str(v) for k, v in settings.items()}


def _log_dir(tmp: str) -> Path:
    """Where scorer logs go: CHAOS_LOG_DIR to keep them, else the scenario's temporary folder."""
    kept = os.environ.get("CHAOS_LOG_DIR")
    if not kept:
        return Path(tmp)
    path = Path(tmp if not kept else kept)
    path.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=path))


def _readyz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--broker-events", type=int, default=50_000)
    parser.add_argument("--determinism-events", type=int, default=50_000)
    args = parser.parse_args(argv)
    bootstrap = broker_with_model()
    if bootstrap is None:
        return 2
    model = MODEL
    results: dict[str, dict[str, Any]] = {}
    for mode in MODES:
        say(f"{mode}: {args.events:,} events, {args.kills} scorer kills")
        kills = kill_scenario(bootstrap, mode, model, args.events, args.kills)
        say(f"{mode}: {_line(kills)}")
        say(f"{mode}: {args.broker_events:,} events, one broker kill and restart")
        broker = broker_scenario(mode, model, args.broker_events)
        say(f"{mode}: {_line(broker)}")
        results[mode] = {"kills": asdict(kills), "broker": asdict(broker)}
    say(f"exactly_once: {args.determinism_events:,} events, 1 -> 3 -> 2 workers (one SIGKILLed) against one worker")
    determinism = determinism_scenario(bootstrap, model, args.determinism_events)
    say(f"exactly_once: {_line(determinism)}")
    results["exactly_once"]["determinism"] = asdict(determinism)
    summary = {**results, "determinism_mismatches": determinism.determinism_mismatches,
               "restore_seconds": determinism.restore_seconds}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "chaos.json").write_text(json.dumps(summary, indent=2) + "\n")
    say(f"wrote {RESULTS / 'chaos.json'}")
    bad = [f"{m}/{s}" for m, r in results.items() for s, o in r.items()
           if o["lost"] or not o["order_held"] or (m == "exactly_once" and o["duplicates"])]
    if determinism.determinism_mismatches:
        bad.append("exactly_once/determinism")
    if bad:
        say(f"guarantee broken in: {', '.join(bad)}")
        return 1
    return 0


def _line(o: Outcome) -> str:
    return (f"{o.scenario}: inputs {o.inputs:,}, outputs {o.outputs:,}, lost {o.lost}, duplicates {o.duplicates}, "
            f"kills {o.scorer_kills}, broker restarts {o.broker_restarts}, order held {o.order_held}, "
            f"not ready seen {o.not_ready_seen}, determinism mismatches {o.determinism_mismatches}, "
            f"restores {o.restore_seconds} s, {o.seconds:.0f}s")


if __name__ == "__main__":
    sys.exit(main())
