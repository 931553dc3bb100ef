"""Exactly-once delivery: one Kafka transaction per batch, with its input offsets inside it.

The error handling follows librdkafka's transactions guide and
confluent-kafka's examples:

- a retriable error: the same call is tried again (a commit that timed out
  is retried, never aborted, since it may have succeeded);
- an error that requires an abort: the transaction is aborted and the
  caller rewinds its consumer to the batch's first offsets, so the batch is
  read and scored again;
- a fatal error, which includes being fenced by a newer instance with the
  same ``transactional.id``: the producer is unusable; KafkaFatalError ends
  the process, and the supervisor's restart resumes from the last commit;
- a call that does not return within its own timeout plus a margin:
  TransactionStuckError. librdkafka 2.16 has open bugs where
  ``send_offsets_to_transaction`` ignores its timeout and hangs after the
  group coordinator's broker restarts (confluentinc/librdkafka#5456, #5511);
  seen here on every broker restart. The caller replaces the producer: a new
  one with the same transactional.id fences the stuck one and aborts its
  transaction.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from stream.exceptions import KafkaFatalError, StreamError
from stream.kafka.sink import PredictionSink
from stream.types import TopicPartition as TP

__all__ = ["TransactionAbortedError", "TransactionStuckError", "Transactions"]

logger = logging.getLogger(__name__)

# Timeout of each transactional call; retriable errors are retried until
# RETRY_FOR_S has passed in all. A call still running HANG_MARGIN_S after its
# own timeout is stuck.
CALL_TIMEOUT_S = 10.0
HANG_MARGIN_S = 10.0
RETRY_FOR_S = 300.0
RETRY_PAUSE_S = 0.5

T = TypeVar("T")


class TransactionAbortedError(StreamError):
    """The batch's transaction was aborted: nothing of it is visible; rewind and score it again."""


class TransactionStuckError(StreamError):
    """A transactional call outlived its timeout: the producer must be replaced."""


class Transactions:
    """The transactional calls of one producer, each with its error classes handled."""

    def __init__(self, sink: PredictionSink) -> None:
        """Transactions of the sink's producer (its settings carry the transactional.id)."""
        self._sink = sink
        self._producer = sink.producer
        self.open = False
        # Calls run here, so that one that hangs can be given up on.
        self._runner = _DaemonRunner()

    def init(self, timeout_s: float = CALL_TIMEOUT_S) -> None:
        """Register the transactional.id; aborts what a previous process with the same id left open."""
        self._call("init_transactions", lambda: self._producer.init_transactions(timeout_s))

    def begin(self) -> None:
        self._call("begin_transaction", self._producer.begin_transaction)
        self.open = True

    def commit(self, next_offsets: Mapping[TP, int], group_metadata: Any) -> None:
        """Add the input offsets to the open transaction and commit it.

        TransactionAbortedError when it had to be aborted instead.
        """
        offsets = [TopicPartition(t, p, o) for (t, p), o in next_offsets.items()]
        if offsets:
            self._call("send_offsets_to_transaction", lambda: self._producer.send_offsets_to_transaction(
                offsets, group_metadata, CALL_TIMEOUT_S))
        self._call("commit_transaction", lambda: self._producer.commit_transaction(CALL_TIMEOUT_S))
        self.open = False

    def abort(self) -> None:
        """Abort the open transaction, if any."""
        if not self.open:
            return
        self._call("abort_transaction", lambda: self._producer.abort_transaction(CALL_TIMEOUT_S), abortable=False)
        self.open = False
        self._sink.discard_failures()  # the aborted outputs' delivery failures went with them

    def _call(self, name: str, call: Callable[[], T], abortable: bool = True) -> T:
        deadline = time.monotonic() + RETRY_FOR_S
        while True:
            try:
                return self._bounded(name, call)
            except KafkaException as exc:
                err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
                if err is None or err.fatal():
                    raise KafkaFatalError(f"{name} failed fatally: {exc}") from exc
                if abortable and err.txn_requires_abort():
                    logger.warning("%s failed (%s): aborting the transaction", name, err.str())
                    self.abort()
                    raise TransactionAbortedError(f"{name} failed: {err.str()}") from exc
                if err.retriable() and time.monotonic() < deadline:
                    logger.warning("%s failed (%s): retrying", name, err.str())
                    time.sleep(RETRY_PAUSE_S)
                    continue
                raise KafkaFatalError(f"{name} failed: {err.str()}") from exc

    def _bounded(self, name: str, call: Callable[[], T]) -> T:
        done, box = self._runner.submit(call)
        if not done.wait(CALL_TIMEOUT_S + HANG_MARGIN_S):
            raise TransactionStuckError(
                f"{name} did not return within {CALL_TIMEOUT_S + HANG_MARGIN_S:.0f}s (its timeout is "
                f"{CALL_TIMEOUT_S:.0f}s; librdkafka#5456/#5511)")
        if "error" in box:
            raise box["error"]
        return box["value"]


class _DaemonRunner:
    """Runs calls one at a time on a daemon thread.

    Not a ThreadPoolExecutor: the interpreter joins those threads at exit, so
    one call stuck inside librdkafka would keep the process from exiting.
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._loop, name="txn", daemon=True).start()

    def submit(self, call: Callable[[], Any]) -> tuple[threading.Event, dict[str, Any]]:
        """Queue ``call``; the event is set once ``box`` holds its "value" or "error"."""
        done = threading.Event()
        box: dict[str, Any] = {}
        self._jobs.put((call, done, box))
        return done, box

    def _loop(self) -> None:
        while True:
            call, done, box = self._jobs.get()
            try:
                box["value"] = call()
            except BaseException as exc:
                box["error"] = exc
            done.set()
