"""Keeping a consumer in its group while a long batch is scored on the loop's own thread.

librdkafka evicts a member that does not poll for max.poll.interval.ms. A
batch is scored where it was polled (handing each batch to another thread
cost 10-20% of throughput on two shared cores: two thread wake-ups per
batch). A helper thread looks every CHECK_EVERY_S; when the batch has been
scoring for ``after_s``, it pauses every partition and polls the consumer
(which then returns nothing but runs rebalance callbacks and counts as a
poll) until the batch is done, then resumes. The loop does not touch the
consumer while a batch is scored, and waits for the helper to resume it
before it does again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Protocol

__all__ = ["KeepAlive", "hold"]

logger = logging.getLogger(__name__)

CHECK_EVERY_S = 0.25
POLL_S = 0.2


class Pausable(Protocol):
    def pause(self) -> None: ...
    def keep_alive(self, timeout_s: float) -> None: ...
    def resume(self) -> None: ...


def hold(source: Pausable, done: Callable[[], bool], poll_s: float = POLL_S) -> None:
    """Stay in the group without reading until ``done()``: pause, poll while paused, resume."""
    source.pause()
    try:
        while not done():
            source.keep_alive(poll_s)
    finally:
        source.resume()


class KeepAlive:
    """``with keep_alive:`` around scoring a batch; the consumer is kept alive if it takes long."""

    def __init__(self, source: Pausable, after_s: float) -> None:
        self._source = source
        self._after_s = after_s
        self._cond = threading.Condition()
        self._busy_since: float | None = None
        self._polling = False
        self._closed = False
        self.pauses = 0  # batches that outlived after_s (for tests and logs)
        threading.Thread(target=self._watch, name="keep-alive", daemon=True).start()

    def __enter__(self) -> KeepAlive:
        with self._cond:
            self._busy_since = time.monotonic()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        with self._cond:
            self._busy_since = None
            while self._polling:  # the helper resumes the consumer, then hands it back
                self._cond.wait()

    def close(self) -> None:
        with self._cond:
            self._closed = True

    def _watch(self) -> None:
        while True:
            time.sleep(CHECK_EVERY_S)
            with self._cond:
                if self._closed:
                    return
                since = self._busy_since
                if since is None or time.monotonic() - since < self._after_s:
                    continue
                self._polling = True
            self.pauses += 1
            logger.info("batch still being scored after %.0fs: pausing the consumer meanwhile", self._after_s)
            try:
                hold(self._source, self._batch_done)
            except Exception:  # the loop must not wait forever on a helper that died
                logger.exception("keeping the consumer alive failed")
            finally:
                with self._cond:
                    self._polling = False
                    self._cond.notify_all()

    def _batch_done(self) -> bool:
        with self._cond:
            return self._busy_since is None
