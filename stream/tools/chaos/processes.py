"""The processes a fault scenario runs and hurts: scorers, a broker of its own, and the checks of what came out.

Used by the scenarios in ``stream.tools.chaos.scenarios`` (``make chaos``
and ``tests/integration/test_faults.py``). Every process runs on loopback,
from this checkout's own scripts.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer

from schemas import load_schema
from stream.avro.codec import AvroCodec, AvroEncoder
from stream.kafka.admin import ensure_topics
from stream.tools.generators import sensor_events
from stream.tools.simulator import produce_events

ROOT = Path(__file__).resolve().parents[3]
LOCAL_KAFKA = ROOT / "scripts" / "local-kafka"
CONFIG = ROOT / "examples" / "sensor.toml"
MODES = ("at_least_once", "exactly_once")
PREDICTION = AvroCodec(load_schema("prediction"))
PARTITIONS = 8
KEYS = 500
# Small batches, so that a run lasts long enough to be killed several times.
BATCH_SIZE = 100
START_TIMEOUT_S = 90.0
FINISH_IDLE_S = 8.0
FINISH_TIMEOUT_S = 120.0


def scorer_environ(bootstrap: str, topic: str, group: str, model: Path, **settings: Any) -> dict[str, str]:
    """The environment of a ``streamscore run`` of ``topic`` (outputs to ``<topic>-out``, ``-dlq``, ``-drift``)."""
    env = {**os.environ, "STREAMSCORE_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
           "STREAMSCORE_KAFKA__INPUT_TOPICS": json.dumps([topic]), "STREAMSCORE_KAFKA__GROUP_ID": group,
           "STREAMSCORE_KAFKA__OUTPUT_TOPIC": topic + "-out", "STREAMSCORE_KAFKA__DEAD_LETTER_TOPIC": topic + "-dlq",
           "STREAMSCORE_DRIFT__TOPIC": topic + "-drift", "STREAMSCORE_MODEL__PATH": str(model),
           "STREAMSCORE_METRICS__ENABLED": "false", "STREAMSCORE_LOG_LEVEL": "WARNING",
           "STREAMSCORE_STATE__SIGNING_SECRET": os.environ.get("STREAMSCORE_STATE__SIGNING_SECRET",
                                                               "streamscore-chaos-signing-secret")}
    env.update({f"STREAMSCORE_{k.upper()}": str(v) for k, v in settings.items()})
    return env


def say(text: str) -> None:
    print(f"chaos: {text}", file=sys.stderr, flush=True)


# A prediction as the scenarios compare it: its score and how many events its key's windows held.
Scored = tuple[float, int]


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
    # determinism scenario with state.key_ttl_s: events whose key came back after the ttl, to empty windows
    key_returns: int | None = None
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
        "batch__max_size": BATCH_SIZE, "processing__guarantee": mode,
        "metrics__enabled": "true", "metrics__host": "127.0.0.1", "metrics__port": 0, "log_level": "INFO",
        # A restarted process takes its predecessor's place in the group at once
        # (static membership) instead of waiting for its session to time out.
        "kafka__consumer__group_instance_id": topic + "-scorer",
    }
    if mode == "exactly_once":
        settings["processing__transactional_id"] = topic + "-scorer"
    return scorer_environ(bootstrap, topic, topic, model, **settings)


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


class SourceReader:
    """Reads a prediction topic (read_committed) as it fills: the scores of each source (partition, offset)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"verify-{uuid.uuid4().hex[:8]}",
                                   "auto.offset.reset": "earliest", "enable.auto.commit": False,
                                   "isolation.level": "read_committed"})
        self._consumer.subscribe([topic])
        self.sources: dict[tuple[int, int], list[Scored]] = defaultdict(list)

    def read(self, timeout_s: float = 0.2) -> int:
        got = [m for m in self._consumer.consume(num_messages=5000, timeout=timeout_s) if m.error() is None]
        add_scores(self.sources, got)
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

    def finish(self, settle_s: float = 3.0) -> dict[tuple[int, int], list[Scored]]:
        """Everything, once nothing new came for ``settle_s``."""
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < settle_s:
            if self.read(0.5):
                quiet_since = time.monotonic()
        return dict(self.sources)

    def close(self) -> None:
        self._consumer.close()


def scores_by_source(messages: list[Any]) -> dict[tuple[int, int], list[Scored]]:
    """The (score, window_events) of each source (partition, offset) among prediction messages."""
    out: dict[tuple[int, int], list[Scored]] = defaultdict(list)
    add_scores(out, messages)
    return dict(out)


def add_scores(into: dict[tuple[int, int], list[Scored]], messages: list[Any]) -> None:
    for msg in messages:
        p = PREDICTION.decode(msg.value())
        into[(p["source_partition"], p["source_offset"])].append((p["score"], p["window_events"]))


def prefixed(settings: dict[str, Any]) -> dict[str, str]:
    return {f"STREAMSCORE_{k.upper()}": str(v) for k, v in settings.items()}


def log_dir(tmp: str) -> Path:
    """Where scorer logs go: CHAOS_LOG_DIR to keep them, else the scenario's temporary folder."""
    kept = os.environ.get("CHAOS_LOG_DIR")
    if not kept:
        return Path(tmp)
    path = Path(kept if kept else tmp)
    path.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=path))


def readyz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0
