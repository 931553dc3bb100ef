"""Helpers for tests against a real broker: fresh names, configs, and reading topics back."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer

from schemas import load_schema
from stream.avro.codec import AvroEncoder
from stream.config import ServiceConfig, load_config
from stream.tools.simulator import produce_events

ROOT = Path(__file__).resolve().parents[2]
SENSOR_CONFIG = ROOT / "examples" / "sensor.toml"
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


class SchemaRegistryStub:
    """The Schema Registry REST calls streamscore makes (register, fetch by id), served on loopback.

    Stands in for a registry only; the broker in these tests is always real.
    """

    def __init__(self) -> None:
        self.schemas: dict[int, str] = {}
        self.ids: dict[tuple[str, str], int] = {}
        self.available = True  # False: every request answers 503, as a registry that is down behind a proxy
        self.refused = 0  # requests answered 503
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: Mapping[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if not stub.available:
                    stub.refused += 1
                    self._send(503, {"error_code": 50301, "message": "unavailable"})
                    return
                parts = self.path.split("?")[0].strip("/").split("/")
                if len(parts) == 3 and parts[:2] == ["schemas", "ids"] and int(parts[2]) in stub.schemas:
                    self._send(200, {"schema": stub.schemas[int(parts[2])]})
                else:
                    self._send(404, {"error_code": 40403, "message": "Schema not found"})

            def do_POST(self) -> None:
                parts = self.path.split("?")[0].strip("/").split("/")
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if len(parts) == 3 and parts[0] == "subjects" and parts[2] == "versions":
                    key = (parts[1], body["schema"])
                    if key not in stub.ids:
                        stub.ids[key] = len(stub.schemas) + 1
                        stub.schemas[stub.ids[key]] = body["schema"]
                    self._send(200, {"id": stub.ids[key]})
                else:
                    self._send(404, {"error_code": 404, "message": "not found"})

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> SchemaRegistryStub:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()


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
