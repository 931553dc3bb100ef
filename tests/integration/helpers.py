"""Helpers for tests against a real broker: fresh names, configs, and reading topics back."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer

from schemas import load_schema
from stream.avro.codec import AvroEncoder
from stream.config import ServiceConfig, load_config
from stream.tools.simulator import produce_events

ROOT = Path(__file__).resolve().parents[2]
SENSOR_CONFIG = ROOT / "examples" / "sensor.toml"
# Signs drift-detector state in the tests' changelogs.
TEST_SIGNING_SECRET = "streamscore-tests-signing-secret"
# After the expected count has arrived, keep reading this long to catch extras.
GRACE_S = 1.5


@dataclass(frozen=True)
class Record:
    """A consumed message, detached from librdkafka."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:10]}"


def service_environ(bootstrap: str, model_dir: Path, input_topic: str, **settings: Any) -> dict[str, str]:
    """STREAMSCORE_* variables pointing the sensor example at fresh topics and group, plus ``section__key`` overrides.

    For a scorer in a child process: ``{**os.environ, **service_environ(...)}``.
    """
    environ = {
        "STREAMSCORE_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "STREAMSCORE_KAFKA__INPUT_TOPICS": json.dumps([input_topic]),
        "STREAMSCORE_KAFKA__OUTPUT_TOPIC": input_topic + "-predictions",
        "STREAMSCORE_KAFKA__DEAD_LETTER_TOPIC": input_topic + "-dlq",
        "STREAMSCORE_KAFKA__GROUP_ID": input_topic + "-group",
        "STREAMSCORE_MODEL__PATH": str(model_dir),
        # any free port, so that tests never collide with a scorer or each other on 9400
        "STREAMSCORE_METRICS__PORT": "0",
        "STREAMSCORE_METRICS__HOST": "127.0.0.1",
        # drift detectors follow their partition only when their state can be signed
        "STREAMSCORE_STATE__SIGNING_SECRET": TEST_SIGNING_SECRET,
    }
    environ.update({f"STREAMSCORE_{k.upper()}": _toml(v) for k, v in settings.items()})
    return environ


def service_config(bootstrap: str, model_dir: Path, input_topic: str, **settings: Any) -> ServiceConfig:
    """The sensor example pointed at fresh topics and group, with overrides as ``section__key=value``."""
    return load_config(SENSOR_CONFIG, service_environ(bootstrap, model_dir, input_topic, **settings))


def produce(bootstrap: str, topic: str, records: list[dict[str, Any]], partitions: int = 8,
            encoder: AvroEncoder | None = None, rate: float = 0.0) -> list[tuple[int, int]]:
    """Produce sensor records keyed by sensor id; return each one's (partition, offset)."""
    from stream.kafka.admin import ensure_topics

    ensure_topics({"bootstrap.servers": bootstrap}, {topic: partitions})
    result = produce_events(
        {"bootstrap.servers": bootstrap}, topic, ((r, 0) for r in records),
        encoder or AvroEncoder(load_schema("sensor_reading")), "sensor_id",
        rate=rate, keep_positions=True, progress=lambda _text: None,
    )
    assert result.positions is not None
    return result.positions


def live_feed(bootstrap: str, topic: str, records: list[dict[str, Any]], backlog: int, partitions: int,
              rate: float) -> tuple[list[tuple[int, int]], threading.Thread]:
    """Produce the first ``backlog`` records now, the rest at ``rate``/s from a started thread (join it).

    Returns the backlog's (partition, offset) positions and the thread.
    """
    positions = produce(bootstrap, topic, records[:backlog], partitions=partitions)
    feeder = threading.Thread(target=produce, args=(bootstrap, topic, records[backlog:], partitions),
                              kwargs={"rate": rate})
    feeder.start()
    return positions, feeder


def read_topic(bootstrap: str, topic: str, expected: int, timeout_s: float = 60.0,
               isolation: str = "read_uncommitted") -> list[Record]:
    """Every record of ``topic`` from the start: waits for ``expected``, then a grace period for extras."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": unique("reader"), "auto.offset.reset": "earliest",
        "enable.auto.commit": False, "isolation.level": isolation,
    })
    consumer.subscribe([topic])
    out: list[Record] = []
    deadline = time.monotonic() + timeout_s
    done_at: float | None = None
    try:
        while time.monotonic() < deadline and (done_at is None or time.monotonic() < done_at):
            for msg in consumer.consume(num_messages=1000, timeout=0.2):
                if msg.error():
                    continue
                out.append(Record(msg.partition(), msg.offset(), msg.key(), msg.value(), dict(msg.headers() or [])))
            if done_at is None and len(out) >= expected:
                done_at = time.monotonic() + GRACE_S
    finally:
        consumer.close()
    return out


def _toml(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value)


def wait_until(predicate: Callable[[], Any], timeout_s: float, what: str, every_s: float = 0.2) -> Any:
    """Ask ``predicate`` until it returns something true (then return it); AssertionError after ``timeout_s``.

    For conditions with nothing to block on (another process's progress, a
    metric); where an event or a join exists, wait on that instead.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = predicate()
        except OSError:  # an endpoint not up yet, or slow to answer: ask again
            value = None
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(every_s)


class MlflowServer:
    """A real ``mlflow server`` on loopback: sqlite backend store and local artifact root under ``folder``.

    ``stop`` and ``start`` again keep its data (the sqlite file and the
    artifacts) and its port, as a restarted registry server would.
    """

    def __init__(self, folder: Path) -> None:
        import socket

        self.folder = folder
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: Any = None

    def start(self, timeout_s: float = 90.0) -> None:
        import shutil
        import subprocess
        import urllib.request

        executable = shutil.which("mlflow", path=str(Path(__import__("sys").executable).parent))
        assert executable is not None, "mlflow is not installed (make mlflow-extra)"
        self._log = (self.folder / "server.log").open("a")
        self._process = subprocess.Popen(
            [executable, "server", "--backend-store-uri", f"sqlite:///{self.folder / 'registry.sqlite'}",
             "--default-artifact-root", str(self.folder / "artifacts"), "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", "1"],
            stdout=self._log, stderr=self._log, start_new_session=True)

        def healthy() -> bool:
            if self._process.poll() is not None:
                raise AssertionError(f"mlflow server exited: {(self.folder / 'server.log').read_text()[-2000:]}")
            with urllib.request.urlopen(self.url + "/health", timeout=2) as response:
                return response.status == 200

        wait_until(healthy, timeout_s, "the MLflow server's /health")

    def stop(self) -> None:
        import os
        import signal

        if self._process is not None and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGTERM)
            self._process.wait(30)
        self._process = None
