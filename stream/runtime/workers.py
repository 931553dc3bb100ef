"""`streamscore run --workers N`: N scorer processes in one consumer group, on one machine.

Each worker is a `streamscore run` child with the same configuration,
except what must differ between members of a group: the metrics port
(``metrics.port`` + index, unless 0), the transactional id in exactly-once
mode (``<id>-<index>``) and, with static membership, ``group.instance.id``
(``<id>-<index>``). These suffixes are stable, so a restarted worker takes
its own place back. The supervisor forwards SIGTERM/SIGINT to every worker,
restarts a worker that fails (exit code other than 0) after a pause, and
exits with the highest exit code among workers that stopped for good.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from typing import Any

from stream.config import ServiceConfig

# streamscore's exit code for a configuration or start-up error.
EXIT_STARTUP = 2

__all__ = ["supervise", "worker_environ"]

logger = logging.getLogger(__name__)

# A failed worker is started again after this long (doubling up to the cap).
RESTART_PAUSE_S = 1.0
RESTART_PAUSE_MAX_S = 30.0


def worker_environ(environ: Mapping[str, str], config: ServiceConfig, index: int) -> dict[str, str]:
    """The environment of worker ``index``: ``environ`` plus the per-worker overrides."""
    env = dict(environ)
    if config.metrics.enabled and config.metrics.port:
        env["STREAMSCORE_METRICS__PORT"] = str(config.metrics.port + index)
    if config.processing.guarantee == "exactly_once":
        env["STREAMSCORE_PROCESSING__TRANSACTIONAL_ID"] = f"{config.transactional_id}-{index}"
    instance = config.kafka.consumer.get("group.instance.id")
    if instance:
        env["STREAMSCORE_KAFKA__CONSUMER__GROUP_INSTANCE_ID"] = f"{instance}-{index}"
    return env


def supervise(command: Sequence[str], environ: Mapping[str, str], config: ServiceConfig, workers: int) -> int:
    """Run ``workers`` copies of ``command`` (a `streamscore run` line) until all stop; their worst exit code."""
    stopping = False
    procs: dict[int, subprocess.Popen[bytes]] = {}
    pauses = dict.fromkeys(range(workers), RESTART_PAUSE_S)
    restart_at: dict[int, float] = {}
    codes: dict[int, int] = {}

    def start(index: int) -> None:
        procs[index] = subprocess.Popen([*command, "--worker-index", str(index)],  # noqa: S603 - our own CLI
                                        env=worker_environ(environ, config, index))
        logger.info("worker %d started (pid %d)", index, procs[index].pid)

    def forward(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        logger.info("%s: stopping %d workers", signal.Signals(signum).name, len(procs))
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for index in range(workers):
        start(index)
    while procs or (restart_at and not stopping):
        for index, proc in list(procs.items()):
            code = proc.poll()
            if code is None:
                continue
            del procs[index]
            if code in (0, EXIT_STARTUP) or stopping:  # done, or a start-up error a restart would repeat
                codes[index] = code
                logger.info("worker %d exited with %d", index, code)
                continue
            logger.error("worker %d failed with exit code %d: restarting it in %.0fs", index, code, pauses[index])
            restart_at[index] = time.monotonic() + pauses[index]
            pauses[index] = min(pauses[index] * 2, RESTART_PAUSE_MAX_S)
        for index, when in list(restart_at.items()):
            if stopping:
                codes[index] = 1
                del restart_at[index]
            elif time.monotonic() >= when:
                del restart_at[index]
                start(index)
        time.sleep(0.2)
    return max(codes.values(), default=0)
