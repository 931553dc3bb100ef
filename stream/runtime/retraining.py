"""Retraining closed on drift: an alarm on the error signal starts ``train --from-topics`` in a child process.

Off by default (``model.retrain_on_alarm``). The loop only looks at the
batch's drift events; waiting for enough events after the alarm, training
and registering happen on a thread of this module and in a child process,
so the loop never waits for them. The new version is registered under
``model.retrain_alias`` (``challenger``): the scorer then shadows it, and
promoting it stays a decision (``models promote``, or the promotion rule).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence

from models.drift import DriftEvent
from stream.config import ServiceConfig

__all__ = ["Retrainer"]

logger = logging.getLogger(__name__)

# How often the waiting thread looks at the events scored since the alarm.
WAIT_STEP_S = 0.5
# A training run that takes longer than this is stopped.
TRAIN_TIMEOUT_S = 3600


class Retrainer:
    """Starts one retraining at a time, after an error alarm and ``model.retrain_after_events`` more events."""

    def __init__(self, config: ServiceConfig, consumed: Callable[[], int],
                 on_outcome: Callable[[str], None] | None = None) -> None:
        """``consumed`` tells how many input events the service has scored (read from another thread)."""
        self.config = config
        self.consumed = consumed
        self.on_outcome = on_outcome
        self._busy = False
        self._quiet_until = 0  # consumed count before which alarms start nothing (one retrain per episode)
        self._stop = threading.Event()
        self._process: subprocess.Popen[str] | None = None

    def on_alarms(self, events: Sequence[DriftEvent]) -> None:
        """Loop thread: start a retraining for the first error alarm, unless one runs or just ran."""
        if self._busy or not events:
            return
        alarm = next((e for e in events if e.signal == "error"), None)
        if alarm is None or self.consumed() < self._quiet_until:
            return
        self._busy = True
        threading.Thread(target=self._retrain, args=(alarm, self.consumed()), name="retrain", daemon=True).start()

    def close(self) -> None:
        """Stop waiting; a training run in progress is terminated."""
        self._stop.set()
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()

    def _retrain(self, alarm: DriftEvent, consumed_at: int) -> None:
        after = self.config.model.retrain_after_events
        try:
            logger.info("error alarm in %s[%d] at event time %d: retraining after %d more events",
                        alarm.topic, alarm.partition, alarm.event_time, after)
            while self.consumed() < consumed_at + after:
                if self._stop.wait(WAIT_STEP_S):
                    return
            self._run(alarm.event_time)
        finally:
            self._quiet_until = self.consumed() + after
            self._busy = False

    def _run(self, from_time_ms: int) -> None:
        config, model = self.config, self.config.model
        assert model.store is not None and model.name is not None and config.labels.topic is not None
        command = [sys.executable, "-m", "stream.cli", "train", "--config", config.source, "--from-topics",
                   "--from-time", str(from_time_ms), "--register", model.name, "--store", model.store,
                   "--alias", model.retrain_alias]
        env = {**os.environ, "STREAMSCORE_KAFKA__BOOTSTRAP_SERVERS": config.kafka.bootstrap_servers,
               "STREAMSCORE_KAFKA__INPUT_TOPICS": json.dumps(list(config.kafka.input_topics)),
               "STREAMSCORE_LABELS__TOPIC": config.labels.topic}
        self._process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,  # noqa: S603 - our own CLI
                                         stderr=subprocess.PIPE, text=True)
        try:
            out, err = self._process.communicate(timeout=TRAIN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._process.kill()
            out, err = self._process.communicate()
        code = self._process.returncode
        self._process = None
        if code != 0:
            tail = (err or "").strip().splitlines()[-1:] or ["no output"]
            logger.error("retraining from event time %d failed (exit %d): %s", from_time_ms, code, tail[0])
            self._outcome("failed")
            return
        summary = json.loads(out.strip().splitlines()[-1])
        logger.info("retrained from event time %d: %s version %s is %s (held-out %s)", from_time_ms,
                    summary.get("model"), summary.get("version"), model.retrain_alias,
                    summary.get("metrics"))
        self._outcome("registered")

    def _outcome(self, outcome: str) -> None:
        if self.on_outcome is not None:
            self.on_outcome(outcome)
