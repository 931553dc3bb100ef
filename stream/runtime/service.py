"""The run loop: poll a micro-batch, score it, deliver its outputs, commit its offsets.

At-least-once (the default): a batch's input offsets are committed only
after every prediction and dead letter it caused is acknowledged by the
broker. A crash anywhere before the commit means the batch is read and
scored again. Exactly-once: each batch's outputs and input offsets commit in
one Kafka transaction; an aborted one is rewound and scored again.

A batch still being scored after KEEP_ALIVE_AFTER_S has the consumer
paused and polled by a helper thread until it is done (``keepalive``),
so a slow model never outlives max.poll.interval.ms and never gets the
member evicted from its group. The wiring of all the parts is in ``wiring``.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
import time
from collections.abc import Sequence

import numpy as np
from confluent_kafka import Message

from stream.avro.codec import AvroEncoder
from stream.config import ServiceConfig
from stream.exceptions import DeliveryError, SchemaRegistryUnavailableError, StreamError
from stream.kafka.sink import PredictionSink
from stream.kafka.source import KafkaSource, position
from stream.kafka.transactions import TransactionAbortedError, Transactions, TransactionStuckError
from stream.pipeline.processor import BatchProcessor
from stream.pipeline.refusals import Position, Rerouted, reroute
from stream.pipeline.results import BatchResult
from stream.runtime.health import HealthServer
from stream.runtime.keepalive import KeepAlive, hold
from stream.runtime.lifecycle import ModelLifecycle
from stream.runtime.metrics import ServiceMetrics
from stream.runtime.stats import RunStats
from stream.state.keeper import StateKeeper
from stream.types import Offsets

__all__ = ["ScoringService"]

logger = logging.getLogger(__name__)

# Consumer lag is refreshed at most this often (it asks librdkafka per partition).
LAG_EVERY_S = 1.0
# How often a background thread asks the cluster for metadata, for /readyz.
BROKER_CHECK_EVERY_S = 2.0
# Rounds of dead letters for refused outputs before the batch fails: a refused
# prediction's dead letter goes bare, and a bare one fits any topic.
REROUTE_ROUNDS = 3
# With nothing to score, how long one poll blocks for a first event (an event
# arriving ends the wait at once; this only bounds how often an idle loop turns).
IDLE_WAIT_S = 0.1
# A batch still being scored after this long pauses the consumer and polls it
# until scoring is done (well inside any sensible max.poll.interval.ms).
KEEP_ALIVE_AFTER_S = 1.0


class ScoringService:
    """Consumes micro-batches, scores them, produces outputs, commits."""

    def __init__(
        self,
        *,
        config: ServiceConfig,
        processor: BatchProcessor,
        source: KafkaSource,
        sink: PredictionSink,
        state: StateKeeper,
        stats: RunStats,
        metrics: ServiceMetrics,
        drift_encoder: AvroEncoder | None = None,
        transactions: Transactions | None = None,
    ) -> None:
        self.config = config
        self.processor = processor
        self.source = source
        self.sink = sink
        self.state = state
        self.stats = stats
        self.metrics = metrics
        self.drift_encoder = drift_encoder
        self.transactions = transactions  # exactly-once mode when set
        self.health: HealthServer | None = None
        self.thread_limits: object | None = None  # the model's thread limits hold while this handle lives
        self.lifecycle: ModelLifecycle | None = None  # alias following, the challenger
        self._stopping = False
        self._stopped = threading.Event()
        self._lag_updated = 0.0
        # Refreshed by a background thread, so that /readyz answers at once and
        # stays true to the broker while the loop waits on it.
        self._broker_ok = False
        self._registry_ok = True
        self._keep_alive = KeepAlive(source, KEEP_ALIVE_AFTER_S)
        self._abandoned: list[PredictionSink] = []  # producers replaced after a stuck transactional call
        self._seen_joined = 0
        self._seen_unmatched = 0
        self._seen_unlabelled = 0
        self._in_flight: BatchResult | None = None  # produced, not yet acknowledged and committed
        # exactly-once: inputs whose outputs were refused in an aborted transaction, dead-lettered when read again
        self._refused: dict[Position, str] = {}

    def readiness(self) -> dict[str, bool]:
        """The /readyz checks: a model is loaded, partitions are assigned, the broker answers."""
        return {
            "model_loaded": self.processor.scorer is not None,
            "partitions_assigned": bool(self.source.assigned),
            "broker_reachable": self._broker_ok,
            "schema_registry_reachable": self._registry_ok,
            "model_store_reachable": self.lifecycle is None or self.lifecycle.store_reachable,
        }

    @property
    def stopping(self) -> bool:
        """Whether ``stop`` was called."""
        return self._stopping

    def stop(self) -> None:
        """Ask the loop to stop after the current batch (safe from a signal handler)."""
        self._stopping = True

    def run(self, max_events: int | None = None, idle_exit_seconds: float | None = None) -> RunStats:
        """Score until stopped, until ``max_events`` inputs are done, or until idle that long.

        Pipelined: while one batch's outputs travel to the broker, the next
        batch is polled and, if it is full (a backlog), scored; the first
        batch's offsets are committed once all its outputs are acknowledged,
        before the next batch's outputs are produced. A part batch (the
        consumer has caught up) waits for the batch in flight to be
        acknowledged and takes in what arrived meanwhile: fewer, larger
        batches under live load, and each acknowledged as soon as it lands.
        At most one batch is in flight, so nothing is committed ahead of its
        outputs.
        """
        batch = self.config.batch
        wait_s = batch.max_wait_ms / 1000.0
        last_message = time.monotonic()
        with contextlib.ExitStack() as resources:
            self._start(resources)
            while not self._stopping:
                size = batch.max_size
                if max_events is not None:
                    size = min(size, max_events - self.stats.consumed)
                    if size <= 0:
                        break
                # With a batch in flight, take what is already here rather than wait for more.
                waiting = self._in_flight is None
                messages = self.source.poll_batch(size, wait_s if waiting else 0.0, IDLE_WAIT_S if waiting else 0.0)
                if messages and len(messages) < size and self._in_flight is not None:
                    # Caught up: scoring a part batch while the last one travels gains nothing. That
                    # one is acknowledged first, and what arrives meanwhile joins this batch.
                    self._complete_in_flight()
                    messages += self.source.poll_batch(size - len(messages), 0.0)
                self.state.apply_rebalance()
                if self.lifecycle is not None:
                    self.lifecycle.swap()  # between two batches: a checked version, if one is ready
                self._update_lag()
                result = self._process(messages) if messages else None
                if result is not None:
                    last_message = time.monotonic()
                    self._deliver(result, messages)
                    continue
                self._complete_in_flight()
                idle = time.monotonic() - last_message
                if not messages and idle_exit_seconds is not None and idle >= idle_exit_seconds:
                    logger.info("no input for %.1fs: stopping", idle_exit_seconds)
                    break
            self._complete_in_flight()  # the last batch is acknowledged before the stop's checkpoint goes out
            self._save_state()
            self._hand_over()
            self.source.commit_pending()
            if self.lifecycle is not None:
                self.lifecycle.record(self.stats)
        logger.info("stopped: %s", self.stats.summary())
        return self.stats

    def _start(self, resources: contextlib.ExitStack) -> None:
        """Start what the loop needs, each on ``resources`` so that it is released in reverse order."""
        kafka, batch = self.config.kafka, self.config.batch
        logger.info(
            "scoring %s -> %s with model %s %s (batch.max_size=%d, batch.max_wait_ms=%d)",
            ",".join(kafka.input_topics), kafka.output_topic, self.processor.model_name,
            self.processor.model_version, batch.max_size, batch.max_wait_ms,
        )
        resources.callback(self.source.close)
        resources.callback(self.state.close)
        resources.callback(lambda: self.sink.close())  # the sink in use then: a stuck one is replaced
        # Start-up leaves millions of long-lived objects (model, compiled kernels,
        # libraries); a full cyclic collection over them stalled the loop for
        # ~120 ms every few seconds. Frozen, they are never scanned again. Done
        # before any other thread calls into librdkafka: a client freed by a
        # collection while another thread is inside librdkafka can crash
        # (confluent-kafka-python#1761).
        gc.collect()
        gc.freeze()
        if self.health is not None:
            self.health.start()
            resources.callback(self.health.stop)
        threading.Thread(target=self._watch_broker, name="broker-check", daemon=True).start()
        resources.callback(self._stopped.set)
        resources.callback(self._keep_alive.close)
        if self.transactions is not None:
            self.transactions.init()
            resources.callback(self._abort_open_transaction)
        self.source.before_revoke = self._hand_over
        if self.state.changelog is not None:
            self.source.on_assigned = self.state.on_assigned
            self.source.on_revoked = self.state.on_revoked
            self.source.committed_timeout_s = self.config.state.restore_timeout_s
        resources.callback(self._detach_callbacks)
        if self.lifecycle is not None:
            self.lifecycle.start(resources)

    def _detach_callbacks(self) -> None:
        self.source.before_revoke = self.source.on_assigned = self.source.on_revoked = None

    def _abort_open_transaction(self) -> None:
        """On the way out: abort the transaction an error left open, if any."""
        assert self.transactions is not None
        try:
            self.transactions.abort()
        except StreamError as exc:
            logger.error("could not abort the open transaction (it times out on the broker): %s", exc)

    def _process(self, messages: list[Message]) -> BatchResult | None:
        """Score a batch; None when it must be read again (registry away, partition moved)."""
        try:
            with self._keep_alive:
                result = self.processor.process(messages, self.state.replay, self._refused)
        except SchemaRegistryUnavailableError as exc:
            # Decoding stopped before any state changed: read the batch again later.
            self._registry_ok = False
            logger.warning("%s; pausing for %.0fs, then reading %d events again",
                           exc, self.config.processing.registry_retry_s, len(messages))
            self._complete_in_flight()
            self.source.rewind(_first_offsets(messages))
            self._pause_for(self.config.processing.registry_retry_s)
            return None
        self._registry_ok = True
        moved = set(result.next_offsets) - self.source.assigned
        if moved:
            # Revoked while being scored: the new owner scores those events from
            # the last commit; producing them here could repeat them.
            logger.warning("partitions %s were revoked while their batch was scored: dropping it, "
                           "reading the rest again", sorted(moved))
            self._complete_in_flight()
            self.state.apply_rebalance()
            kept = {tp: o for tp, o in _first_offsets(messages).items() if tp not in moved}
            self.source.rewind(self.state.reset(kept))
            return None
        # Offsets of input read again for state only stay where they were: the
        # committed offset keeps meaning "outputs delivered up to here".
        result.next_offsets = self.state.scored(result.next_offsets)
        return result

    def _deliver(self, result: BatchResult, messages: list[Message]) -> None:
        """Hand a scored batch to the broker: in its own transaction, or in flight until the next batch."""
        if self.transactions is not None:
            self._commit_transaction(result, messages)
            return
        self._complete_in_flight()
        self._send(result)
        self.state.maybe_checkpoint(self.sink)
        self.stats.record_batch(result.consumed, result.model_seconds)
        self._in_flight = result

    def _pause_for(self, seconds: float) -> None:
        """Stay in the group without reading, for ``seconds`` (or until stopped)."""
        deadline = time.monotonic() + seconds
        hold(self.source, lambda: self._stopping or time.monotonic() >= deadline)

    def _send(self, result: BatchResult) -> None:
        """Hand a batch's predictions, dead letters and drift events to the producer."""
        kafka = self.config.kafka
        self.sink.send_many(kafka.output_topic, result.predictions.keys, result.predictions.values)
        for d in result.dead_letters:
            self.sink.send(kafka.dead_letter_topic, d.key, d.value, headers=d.headers)
        if result.shadow_values and self.config.model.shadow_topic is not None:
            self.sink.send_many(self.config.model.shadow_topic, result.shadow_keys, result.shadow_values)
        if self.drift_encoder is not None:
            for event in result.drift_events:
                self.sink.send(self.config.drift.topic, event.signal.encode(), self.drift_encoder.encode(event.to_record()))

    def _complete_in_flight(self, wait_for_state: bool = False) -> None:
        """Wait for the batch in flight to be acknowledged, then commit its offsets.

        Offsets of partitions whose checkpoint is not acknowledged yet are
        held and committed by a later call; ``wait_for_state`` waits for it.
        """
        result, self._in_flight = self._in_flight, None
        offsets: Offsets = {}
        if result is not None:
            self.sink.flush()
            for _ in range(REROUTE_ROUNDS):
                if not self._reroute(result):
                    break
                self.sink.flush()
            else:
                raise DeliveryError(f"outputs still refused after {REROUTE_ROUNDS} rounds of dead letters")
            latencies = self.stats.record_acks(result.predictions.event_times_ms, time.time())
            self._record_metrics(result, latencies)
            offsets = result.next_offsets
        self.source.commit(self.state.committable(offsets, wait=wait_for_state))

    def _save_state(self) -> None:
        """At a clean stop: checkpoint every partition's unsaved state, so that a restart reads nothing again.

        Exactly-once, in a transaction of its own that commits no new
        offsets. If it aborts, the restart restores the last checkpoint and
        replays from it, as after a crash.
        """
        if not self.state.unsaved:
            return
        if self.transactions is None:
            self.state.maybe_checkpoint(self.sink, everything=True)  # acknowledged before the stop's commit
            return
        self.transactions.begin()
        self.state.maybe_checkpoint(self.sink, everything=True)
        try:
            self.transactions.commit({}, self.source.group_metadata())
        except (TransactionAbortedError, TransactionStuckError) as exc:
            logger.warning("the state saved at stop was not committed (%s): a restart replays the input "
                           "since the last checkpoint", exc)

    def _hand_over(self) -> None:
        """At revocation and stop: the batch in flight and every checkpoint acknowledged, their offsets committed."""
        self._complete_in_flight(wait_for_state=True)

    def _commit_transaction(self, result: BatchResult, messages: list[Message]) -> None:
        """Exactly-once: the batch's outputs and input offsets in one transaction; rewound if it aborts."""
        assert self.transactions is not None
        self.transactions.begin()
        self._send(result)
        self._reroute(result)  # what the producer refused at once goes to the dead-letter topic in this transaction
        saved = self.state.maybe_checkpoint(self.sink)
        try:
            self.transactions.commit(result.next_offsets, self.source.group_metadata())
        except (TransactionAbortedError, TransactionStuckError) as exc:
            refused = self._reroute_later(result)
            logger.warning("batch of %d not delivered (%s): reading it again%s", result.consumed, exc,
                           f", with {len(refused)} inputs whose outputs the broker refused dead-lettered"
                           if refused else "")
            self.metrics.transactions_aborted.inc()
            if isinstance(exc, TransactionStuckError):
                self._replace_producer()
            # A checkpoint aborted with the batch took its partitions' changes
            # with it: those partitions are reset too, from their commit.
            first = {(self.state.input_topic, p): o for p, o in saved.items()}
            self.source.rewind(self.state.reset({**first, **_first_offsets(messages)}))
            return
        self.source.committed_offsets.update(result.next_offsets)  # the transaction committed them
        for done in [p for p in self._refused if p[2] < result.next_offsets.get((p[0], p[1]), -1)]:
            del self._refused[done]  # committed: never read again
        self.stats.record_batch(result.consumed, result.model_seconds)
        latencies = self.stats.record_acks(result.predictions.event_times_ms, time.time())
        self._record_metrics(result, latencies)

    def _reroute(self, result: BatchResult) -> bool:
        """Send dead letters for the batch's outputs refused so far; whether there were any."""
        rerouted = self._rerouted(result)
        for d in rerouted.dead_letters:
            self.sink.send(self.config.kafka.dead_letter_topic, d.key, d.value, headers=d.headers)
            self.metrics.dead_letters.labels(d.reason).inc()
            self.stats.dead_letters[d.reason] += 1
        return bool(rerouted.dead_letters)

    def _reroute_later(self, result: BatchResult) -> dict[Position, str]:
        """Exactly-once, after an abort: the inputs whose outputs were refused, dead-lettered when read again."""
        refused = self._rerouted(result).inputs
        self._refused.update(refused)
        return refused

    def _rerouted(self, result: BatchResult) -> Rerouted:
        kafka = self.config.kafka
        rerouted = reroute(self.sink.take_rejected(), result, output_topic=kafka.output_topic,
                           dead_letter_topic=kafka.dead_letter_topic)
        for where, why in rerouted.inputs.items():
            logger.warning("input %s[%d]@%d: %s; it goes to the dead-letter topic", *where, why)
        for r in rerouted.dropped:
            if r.topic == self.config.state_topic:  # the batch cannot go without it: sent again, refused again
                raise DeliveryError(f"a state checkpoint record ({len(r.value or b''):,} bytes) was {r.reason}: "
                                    f"raise max.message.bytes of {r.topic} and the producer's message.max.bytes")
            logger.error("output to %s %s: it is lost", r.topic, r.reason)
        for topic in [r.topic for r in rerouted.dropped] + [kafka.dead_letter_topic] * len(rerouted.dead_letters):
            self.metrics.outputs_refused.labels(topic).inc()
        return rerouted

    def _record_metrics(self, result: BatchResult, latencies_ms: np.ndarray) -> None:
        m = self.metrics
        for topic, n in result.per_topic.items():
            m.events_consumed.labels(topic).inc(n)
        if result.consumed:
            m.batch_size.observe(result.consumed)
        if len(result.predictions):
            m.model_seconds.observe(result.model_seconds)
        m.latency.observe_many(latencies_ms / 1000.0)
        m.predictions.inc(len(result.predictions))
        for d in result.dead_letters:
            m.dead_letters.labels(d.reason).inc()
            self.stats.dead_letters[d.reason] += 1
        for event in result.drift_events:
            m.drift_alarms.labels(event.signal, event.detector).inc()
        self.stats.drift_alarms += len(result.drift_events)
        joiner = self.processor.quality.joiner if self.processor.quality is not None else None
        if joiner is not None:
            m.labels.labels("joined").inc(joiner.joined - self._seen_joined)
            m.labels.labels("unmatched").inc(joiner.unmatched - self._seen_unmatched)
            self._seen_joined, self._seen_unmatched = joiner.joined, joiner.unmatched
            m.unlabelled.inc(joiner.unlabelled - self._seen_unlabelled)
            self._seen_unlabelled = joiner.unlabelled
            m.label_cache.set(len(joiner))
            for (version, metric), value in joiner.metric_values().items():
                m.online_metric.labels(version, metric).set(value)
        if self.lifecycle is not None:
            self.lifecycle.after_batch(result.drift_events)

    def _replace_producer(self) -> None:
        """A new transactional producer with the same id: it fences the old one and aborts its transaction.

        The old producer is kept, unclosed, for the life of the process: a
        call may still be blocked inside it, and closing it could block too.
        """
        self._abandoned.append(self.sink)
        self.sink = PredictionSink(self.sink.settings)
        self.transactions = Transactions(self.sink)
        self.transactions.init()

    def _watch_broker(self) -> None:
        """Off the loop: whether the broker answers, for /readyz."""
        topic = self.config.kafka.input_topics[0]
        while not self._stopped.is_set():
            self._broker_ok = self.sink.reachable(topic, timeout_s=1.0)
            self._stopped.wait(BROKER_CHECK_EVERY_S)

    def _update_lag(self) -> None:
        now = time.monotonic()
        if now - self._lag_updated < LAG_EVERY_S:
            return
        self._lag_updated = now
        for (topic, partition), lag in self.source.lag().items():
            self.metrics.lag.labels(topic, str(partition)).set(lag)
        for (topic, partition), lag in self.source.committed_lag().items():
            self.metrics.committed_lag.labels(topic, str(partition)).set(lag)


def _first_offsets(messages: Sequence[Message]) -> Offsets:
    """Each partition's first offset in ``messages``: where to rewind to when the batch is read again."""
    first: Offsets = {}
    for m in messages:
        topic, partition, offset = position(m)
        first.setdefault((topic, partition), offset)
    return first
