"""The HTTP endpoint: metrics text, liveness, and readiness that reports its failing checks."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from stream.runtime.health import HealthServer
from stream.runtime.metrics import ServiceMetrics


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_endpoints() -> None:
    metrics = ServiceMetrics()
    metrics.predictions.inc(7)
    metrics.dead_letters.labels("MalformedRecordError").inc()
    checks = {"model_loaded": True, "partitions_assigned": False, "broker_reachable": True}
    server = HealthServer("127.0.0.1", 0, metrics.registry, lambda: dict(checks))
    server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        status, text = get(base + "/metrics")
        assert status == 200
        assert "streamscore_predictions_produced_total 7.0" in text
        assert 'streamscore_dead_letters_total{reason="MalformedRecordError"} 1.0' in text
        assert get(base + "/healthz") == (200, "ok\n")
        status, body = get(base + "/readyz")
        assert status == 503 and json.loads(body)["partitions_assigned"] is False
        checks["partitions_assigned"] = True
        assert get(base + "/readyz")[0] == 200
        assert get(base + "/nope")[0] == 404
    finally:
        server.stop()


def test_a_failing_readiness_check_means_not_ready() -> None:
    def broken() -> dict[str, bool]:
        raise RuntimeError("broker handle closed")

    server = HealthServer("127.0.0.1", 0, ServiceMetrics().registry, broken)
    server.start()
    try:
        assert get(f"http://127.0.0.1:{server.port}/readyz")[0] == 503
    finally:
        server.stop()
