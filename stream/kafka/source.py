"""The consumer side: group membership, micro-batch polling, and offset commits."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Consumer, KafkaError, KafkaException, Message, TopicPartition

from stream.config import redact
from stream.exceptions import KafkaFatalError, StateRestoreError
from stream.types import InputMessage, Offsets
from stream.types import TopicPartition as TP

__all__ = ["CONSUMER_DEFAULTS", "KafkaSource", "position"]

logger = logging.getLogger(__name__)

# earliest: a new group scores the whole topic rather than skipping it.
# fetch.wait.max.ms 20: a quiet partition answers fast (the broker default of
# 500 ms adds to live latency). fetch.queue.backoff.ms 10: librdkafka's 1 s
# default stalls a partition whose local queue filled, capping throughput.
CONSUMER_DEFAULTS: dict[str, Any] = {
    "auto.offset.reset": "earliest",
    "partition.assignment.strategy": "cooperative-sticky",
    "fetch.wait.max.ms": 20,
    "fetch.queue.backoff.ms": 10,
}


# An asynchronous commit unanswered this long no longer holds back the next
# one (librdkafka answers every commit, with an error at worst).
COMMIT_ANSWER_TIMEOUT_S = 30.0


class KafkaSource:
    """A consumer-group member that returns micro-batches and commits only what it is told."""

    def __init__(self, settings: Mapping[str, Any], topics: Sequence[str]) -> None:
        self._settings = {
            **CONSUMER_DEFAULTS,
            **settings,
            # Offsets move only through commit(), after outputs are acknowledged.
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "error_cb": self._on_error,
            "on_commit": self._on_commit,
        }
        logger.debug("consumer settings %s", redact({k: v for k, v in self._settings.items()
                                                     if k not in ("error_cb", "on_commit")}))
        self._consumer = Consumer(self._settings)
        self._fatal: KafkaError | None = None
        self._last_error: str | None = None
        self.assigned: set[TP] = set()
        # (topic, partition) -> offset to commit, not yet confirmed (sent or not)
        self._pending: Offsets = {}
        # When the asynchronous commit in flight (one at a time) was sent; None: none in flight.
        self._commit_sent_at: float | None = None
        # (topic, partition) -> the group's committed offset, as last known here (fetched at
        # assignment, or confirmed since): for the committed lag, without asking the coordinator
        self.committed_offsets: Offsets = {}
        # Called first thing at revoke: the service completes its batch in flight there.
        self.before_revoke: Callable[[], None] | None = None
        # Called at assignment with each new partition's committed offset (None:
        # none); returns where to start reading instead, for the partitions whose
        # state is rebuilt by reading some input again.
        self.on_assigned: Callable[[dict[TP, int | None]], Offsets] | None = None
        # Called with the partitions revoked or lost, once they are gone.
        self.on_revoked: Callable[[set[TP]], None] | None = None
        self.committed_timeout_s = 120.0
        self._cooperative = "cooperative" in str(self._settings.get("partition.assignment.strategy", ""))
        self._topics = list(topics)
        self._consumer.subscribe(self._topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost)

    def poll_batch(self, max_size: int, timeout_s: float, idle_wait_s: float = 0.0) -> list[Message]:
        """Up to ``max_size`` messages; errors are filtered out.

        Natural batching: the batch is what the consumer has ready, up to
        ``max_size``. With nothing ready it waits up to ``idle_wait_s`` for a
        first message, then takes what else is ready by then; it never waits
        for more to arrive unless ``timeout_s`` (``batch.max_wait_ms``) says
        so. Then it waits for the batch to fill until its first message is
        ``timeout_s`` old, counted from that message's Kafka timestamp
        (clamped to [0, ``timeout_s``] against clock skew): messages that
        queued up while the previous batch was scored have already waited.
        """
        consume = self._consumer.consume
        messages = consume(num_messages=max_size, timeout=0)
        wait_first = max(idle_wait_s, timeout_s)
        if not messages and wait_first > 0:
            first = self._consumer.poll(wait_first)
            if first is not None:
                messages = [first, *consume(num_messages=max_size - 1, timeout=0)]
        if timeout_s > 0 and 0 < len(messages) < max_size:
            kind, stamp = messages[0].timestamp()
            age = time.time() - stamp / 1000.0 if kind != TIMESTAMP_NOT_AVAILABLE else 0.0
            left = timeout_s - min(max(age, 0.0), timeout_s)
            if left > 0:
                messages.extend(consume(num_messages=max_size - len(messages), timeout=left))
        if self._fatal is not None:
            raise KafkaFatalError(f"consumer fatal error: {self._fatal.str()}")
        good = []
        for msg in messages:
            err = msg.error()
            if err is None:
                good.append(msg)
            elif err.code() == KafkaError._PARTITION_EOF:
                continue
            elif err.fatal():
                raise KafkaFatalError(f"consumer fatal error: {err.str()}")
            elif err.str() != self._last_error:  # log each distinct error once in a row
                self._last_error = err.str()
                logger.warning("consumer: %s", err.str())
        return good

    def commit(self, next_offsets: Mapping[TP, int], asynchronous: bool = True) -> None:
        """Commit ``next_offsets`` (the next offset to read per partition).

        Asynchronous by default: the loop goes on while the coordinator
        answers. One asynchronous commit is in flight at a time; the next one
        carries every offset not yet confirmed, newest per partition, so
        a loop of small batches (hundreds a second at low rates) sends as
        many commits as the coordinator answers, not one per batch, which
        queued up behind each other and held a stop for tens of seconds.
        Call with no offsets to send the waiting ones once the commit in
        flight is answered; a failed commit's offsets go again that way.
        Offsets not yet confirmed are committed synchronously when their
        partitions are revoked and by ``commit_pending`` at stop, so a
        graceful stop or a rebalance leaves nothing uncommitted; a crash
        before the answer only means those outputs may be produced again.
        """
        self._pending.update(next_offsets)
        if not asynchronous:
            self._commit_sync(dict(next_offsets))
            return
        if not self._pending:
            return
        if self._commit_sent_at is not None:
            waited = time.monotonic() - self._commit_sent_at
            if waited < COMMIT_ANSWER_TIMEOUT_S:
                return
            logger.warning("no answer to the offset commit sent %.0fs ago: sending the next one anyway", waited)
        offsets = [TopicPartition(t, p, o) for (t, p), o in self._pending.items()]
        self._commit_sent_at = time.monotonic()
        self._consumer.commit(offsets=offsets, asynchronous=True)

    def commit_pending(self, partitions: set[TP] | None = None) -> None:
        """Synchronously commit what was sent asynchronously and not yet confirmed."""
        todo = {tp: o for tp, o in self._pending.items() if partitions is None or tp in partitions}
        if todo:
            self._commit_sync(todo)

    def _commit_sync(self, next_offsets: Offsets) -> None:
        offsets = [TopicPartition(t, p, o) for (t, p), o in next_offsets.items()]
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
            self.committed_offsets.update(next_offsets)
            for tp, o in next_offsets.items():
                if self._pending.get(tp) == o:
                    del self._pending[tp]
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if isinstance(err, KafkaError) and err.fatal():
                raise KafkaFatalError(f"commit failed fatally: {err.str()}") from exc
            # A rebalance took the partitions: the new owner re-reads from the
            # last committed offsets, so outputs may repeat but none are lost.
            logger.warning("commit of %s failed (outputs may be produced again): %s", next_offsets, exc)

    def committed_lag(self) -> Offsets:
        """Messages between the group's committed offset and the cached high watermark, per assigned partition
        whose committed offset is known here (fetched at assignment, or committed since)."""
        out = {}
        for tp in sorted(self.assigned):
            committed = self.committed_offsets.get(tp)
            if committed is None:
                continue
            _low, high = self._consumer.get_watermark_offsets(TopicPartition(*tp), cached=True)
            if high >= 0:
                out[tp] = max(0, high - committed)
        return out

    def lag(self) -> Offsets:
        """Messages between the position and the cached high watermark, per assigned partition."""
        tps = [TopicPartition(t, p) for t, p in sorted(self.assigned)]
        if not tps:
            return {}
        out = {}
        for tp in self._consumer.position(tps):
            if tp.offset < 0:
                continue
            _low, high = self._consumer.get_watermark_offsets(tp, cached=True)
            if high >= 0:
                out[(tp.topic, tp.partition)] = max(0, high - tp.offset)
        return out

    def group_metadata(self) -> Any:
        """The consumer group metadata a transaction commits input offsets with."""
        return self._consumer.consumer_group_metadata()

    def rewind(self, offsets: Mapping[TP, int]) -> None:
        """Read again from ``offsets`` (partitions no longer assigned are skipped)."""
        for (topic, partition), offset in offsets.items():
            if (topic, partition) in self.assigned:
                self._consumer.seek(TopicPartition(topic, partition, offset))
        logger.info("rewound %s", ", ".join(f"{t}[{p}]@{o}" for (t, p), o in offsets.items()) or "nothing")

    def pause(self) -> None:
        """Stop fetching on every assigned partition (``keep_alive`` keeps the membership)."""
        self._consumer.pause(self._consumer.assignment())

    def keep_alive(self, timeout_s: float) -> None:
        """Poll while paused: the group sees a live member, and rebalance callbacks run.

        A partition assigned during the pause is not paused yet; a message it
        delivers here is put back (the partition is rewound to it) and the
        partition paused.
        """
        msg = self._consumer.poll(timeout_s)
        if msg is not None and msg.error() is None:
            self._consumer.seek(TopicPartition(*position(msg)))
        self._consumer.pause(self._consumer.assignment())

    def resume(self) -> None:
        """Fetch again on every assigned partition."""
        self._consumer.resume(self._consumer.assignment())

    def close(self) -> None:
        """Leave the group (the partitions move to other members at once)."""
        self._consumer.close()

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.assigned |= {(tp.topic, tp.partition) for tp in partitions}
        logger.info("assigned %s", _names(partitions))
        if self.on_assigned is None or not partitions:
            return
        # Committed offsets are fetched here (a transaction still open on them
        # makes the broker answer "unstable" until it ends, which this waits out).
        try:
            committed = consumer.committed(partitions, timeout=self.committed_timeout_s)
        except KafkaException as exc:
            raise StateRestoreError(f"could not fetch the committed offsets of {_names(partitions)} within "
                                    f"{self.committed_timeout_s:.0f}s (state.restore_timeout_s): {exc}") from exc
        self.committed_offsets.update({(tp.topic, tp.partition): tp.offset for tp in committed if tp.offset >= 0})
        starts = self.on_assigned({(tp.topic, tp.partition): tp.offset if tp.offset >= 0 else None
                                   for tp in committed})
        for tp in partitions:
            start = starts.get((tp.topic, tp.partition))
            if start is not None:
                low, _high = consumer.get_watermark_offsets(tp, timeout=self.committed_timeout_s)
                if start < low:
                    logger.warning("%s[%d]: input from offset %d is needed to rebuild state but the topic starts at "
                                   "%d (retention): the events before are missing from the windows",
                                   tp.topic, tp.partition, start, low)
                tp.offset = max(start, low)
        if any(starts.get((tp.topic, tp.partition)) is not None for tp in partitions):
            logger.info("reading again from %s", ", ".join(f"{tp.topic}[{tp.partition}]@{tp.offset}"
                                                           for tp in partitions if tp.offset >= 0))
        # Assigning here (rather than letting the client do it after this
        # callback) is what sets the start offsets.
        if self._cooperative:
            consumer.incremental_assign(partitions)
        else:
            consumer.assign(partitions)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Inside the run loop's poll: the batch still in flight is acknowledged
        # and handed over first, then whatever is unconfirmed is committed
        # synchronously, leaving nothing behind for the next owner to repeat.
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        if self.before_revoke is not None:
            self.before_revoke()
        self.commit_pending(revoked)
        for tp in revoked:
            self._pending.pop(tp, None)  # not committed (refused): no later commit of ours may override the new owner's
        self.assigned -= revoked
        logger.info("revoked %s", _names(partitions))
        if self.on_revoked is not None:
            self.on_revoked(revoked)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        lost = {(tp.topic, tp.partition) for tp in partitions}
        self.assigned -= lost
        for tp in lost:
            self.committed_offsets.pop(tp, None)
            self._pending.pop(tp, None)  # the new owner's commits are the ones that count now
        logger.warning("lost %s (their uncommitted outputs will be produced again by the new owner)", _names(partitions))
        if self.on_revoked is not None:
            self.on_revoked(lost)

    def _on_commit(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        self._commit_sent_at = None
        for tp in partitions:
            key = (tp.topic, tp.partition)
            if err is not None or tp.error is not None:
                continue  # still pending: the next commit carries it (and revoke or stop at the latest)
            if tp.offset > self.committed_offsets.get(key, -1):  # a late answer takes nothing back
                self.committed_offsets[key] = tp.offset
            if self._pending.get(key) == tp.offset:
                del self._pending[key]
        if err is not None:
            logger.warning("asynchronous commit failed (sent again with the next one): %s", err.str())

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self._fatal = err
        logger.warning("consumer: %s", err.str())


def _names(partitions: list[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions) or "nothing"


def position(msg: InputMessage) -> tuple[str, int, int]:
    """A consumed message's topic, partition and offset (librdkafka sets all three on every message it hands out)."""
    topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
    assert topic is not None and partition is not None and offset is not None, "a message without a position"
    return topic, partition, offset
