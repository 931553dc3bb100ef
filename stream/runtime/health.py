"""The HTTP endpoint: /metrics for Prometheus, /healthz (alive), /readyz (ready to score)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

__all__ = ["HealthServer"]

logger = logging.getLogger(__name__)

# readiness() -> {check name: passed}
Readiness = Callable[[], dict[str, bool]]


class HealthServer:
    """Serves the three endpoints from a daemon thread."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry, readiness: Readiness) -> None:
        self._registry = registry
        self._readiness = readiness
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # scrapes every few seconds: not worth a log line
                pass

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._reply(200, generate_latest(server._registry), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    self._reply(200, b"ok\n", "text/plain")
                elif path == "/readyz":
                    checks = server._safe_readiness()
                    status = 200 if all(checks.values()) else 503
                    self._reply(status, (json.dumps(checks) + "\n").encode(), "application/json")
                else:
                    self._reply(404, b"not found\n", "text/plain")

            def _reply(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="health-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()
        logger.info("serving /metrics, /healthz and /readyz on port %d", self.port)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _safe_readiness(self) -> dict[str, bool]:
        try:
            return self._readiness()
        except Exception as exc:  # a failing check means not ready, and is worth a log line
            logger.warning("readiness check failed: %s", exc)
            return {"checks_ran": False}
