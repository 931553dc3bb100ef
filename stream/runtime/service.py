"""The scoring service: the run loop that ties source, processor and sink together.

At-least-once (the default): a batch's input offsets are committed only
after every prediction and dead letter it caused is acknowledged by the
broker. A crash anywhere before the commit means the batch is read and
scored again. Exactly-once: each batch's outputs and input offsets commit in
one Kafka transaction; an aborted one is rewound and scored again.

A batch still being scored after KEEP_ALIVE_AFTER_S has the consumer
paused and polled by a helper thread until it is done (stream/runtime/keepalive.py),
so a slow model never outlives max.poll.interval.ms and never gets the
member evicted from its group.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections import deque
from pathlib import Path

import numpy as np

from features import FeatureStore
from models import BatchScorer, ModelArtifact
from models.drift import DriftMonitor
from models.labels import LabelJoiner
from models.scorer import limit_model_threads
from stream.avro.codec import AvroCodec, AvroEncoder, SchemaSource
from stream.config import ServiceConfig, read_schema
from stream.exceptions import ConfigError, SchemaRegistryUnavailableError, StreamError
from stream.kafka.admin import admin_settings, ensure_topics, partition_counts
from stream.kafka.registry import RegistrySchemaSource
from stream.kafka.sink import PredictionSink
from stream.kafka.source import KafkaSource
from stream.kafka.transactions import TransactionAbortedError, Transactions, TransactionStuckError
from stream.pipeline.processor import BatchProcessor
from stream.pipeline.quality import QualityTracker
from stream.pipeline.results import BatchResult
from stream.runtime.health import HealthServer
from stream.runtime.keepalive import KeepAlive, hold
from stream.runtime.metrics import ServiceMetrics
from stream.runtime.stats import RunStats
from stream.state.changelog import (
    CHANGELOG_TOPIC_CONFIG,
    Changelog,
    CheckpointDelivery,
    CheckpointSchedule,
    PartitionState,
)
from stream.state.replay import Replay
from stream.types import Offsets, TopicPartition

__all__ = ["ScoringService", "build_service"]

logger = logging.getLogger(__name__)

# Consumer lag is refreshed at most this often (it asks librdkafka per partition).
LAG_EVERY_S = 1.0
# How often a background thread asks the cluster for metadata, for /readyz.
BROKER_CHECK_EVERY_S = 2.0
# A batch still being scored after this long pauses the consumer and polls it
# until scoring is done (well inside any sensible max.poll.interval.ms).
KEEP_ALIVE_AFTER_S = 1.0


class ScoringService:
    """Consumes micro-batches, scores them, produces outputs, commits."""

    def __init__(
        self,
        config: ServiceConfig,
        processor: BatchProcessor,
        source: KafkaSource,
        sink: PredictionSink,
        stats: RunStats,
        metrics: ServiceMetrics,
        drift_encoder: AvroEncoder | None = None,
        health: HealthServer | None = None,
        transactions: Transactions | None = None,
        changelog: Changelog | None = None,
        checkpoints: CheckpointDelivery | None = None,
    ) -> None:
        self.config = config
        self.processor = processor
        self.source = source
        self.sink = sink
        self.stats = stats
        self.metrics = metrics
        self.drift_encoder = drift_encoder
        self.health = health
        self.transactions = transactions  # exactly-once mode when set
        self.thread_limits: object | None = None
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
        self._in_flight: BatchResult | None = None  # produced, not yet acknowledged and committed
        self.changelog = changelog  # window state follows its partition when set
        self.checkpoints = checkpoints  # at-least-once: the changelog's own producer
        self._input_topic = config.kafka.input_topics[0]
        self._replay = Replay()  # input read again after a restore, for state only
        self._progress: dict[int, int] = {}  # input partition -> next offset, since its last checkpoint
        self._schedule = CheckpointSchedule(config.state.checkpoint_interval_ms / 1000.0, time.monotonic())
        # Restores and drops decided in rebalance callbacks (possibly on the
        # keep-alive thread), applied by the loop between batches.
        self._rebalance_ops: deque[tuple[str, object]] = deque()

    def readiness(self) -> dict[str, bool]:
        """The /readyz checks: a model is loaded, partitions are assigned, the broker answers."""
        return {
            "model_loaded": self.processor.scorer is not None,
            "partitions_assigned": bool(self.source.assigned),
            "broker_reachable": self._broker_ok,
            "schema_registry_reachable": self._registry_ok,
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
        batch is polled and scored; the first batch's offsets are committed
        once all its outputs are acknowledged, before the next batch's
        outputs are produced. At most one batch is in flight, so nothing is
        committed ahead of its outputs.
        """
        batch = self.config.batch
        kafka = self.config.kafka
        wait_s = batch.max_wait_ms / 1000.0
        last_message = time.monotonic()
        logger.info(
            "scoring %s -> %s with model %s %s (batch.max_size=%d, batch.max_wait_ms=%d)",
            ",".join(kafka.input_topics), kafka.output_topic, self.processor.model_name,
            self.processor.model_version, batch.max_size, batch.max_wait_ms,
        )
        if self.health is not None:
            self.health.start()
        watcher = threading.Thread(target=self._watch_broker, name="broker-check", daemon=True)
        watcher.start()
        if self.transactions is not None:
            self.transactions.init()
        # Start-up leaves millions of long-lived objects (model, compiled kernels,
        # libraries); a full cyclic collection over them stalled the loop for
        # ~120 ms every few seconds. Frozen, they are never scanned again.
        gc.collect()
        gc.freeze()
        self.source.before_revoke = self._hand_over
        if self.changelog is not None:
            self.source.on_assigned = self._on_assigned
            self.source.on_revoked = self._on_revoked
            self.source.committed_timeout_s = self.config.state.restore_timeout_s
        try:
            while not self._stopping:
                size = batch.max_size
                if max_events is not None:
                    size = min(size, max_events - self.stats.consumed)
                    if size <= 0:
                        break
                # With a batch in flight, take what is already here rather than wait for more.
                messages = self.source.poll_batch(size, 0.0 if self._in_flight is not None else wait_s)
                self._apply_rebalance()
                self._update_lag()
                result = self._process(messages) if messages else None
                if result is None:
                    self._complete_in_flight()
                    if messages:
                        continue  # not scored this time: rewound, read again
                    if idle_exit_seconds is not None and time.monotonic() - last_message >= idle_exit_seconds:
                        logger.info("no input for %.1fs: stopping", idle_exit_seconds)
                        break
                    continue
                last_message = time.monotonic()
                if self.transactions is not None:
                    self._commit_transaction(result, messages)
                else:
                    self._complete_in_flight()
                    self._produce(result)
            self._hand_over()
            self.source.commit_pending()
        finally:
            if self.transactions is not None:
                try:
                    self.transactions.abort()  # only if one is still open: an error left it
                except StreamError as exc:
                    logger.error("could not abort the open transaction (it times out on the broker): %s", exc)
            self._stopped.set()
            self.source.before_revoke = self.source.on_assigned = self.source.on_revoked = None
            self._keep_alive.close()
            self.sink.close()
            if self.checkpoints is not None:
                self.checkpoints.sink.close()
            self.source.close()
            if self.health is not None:
                self.health.stop()
        logger.info("stopped: %s", self.stats.summary())
        return self.stats

    def _process(self, messages: list) -> BatchResult | None:
        """Score a batch; None when it must be read again (registry away, partition moved)."""
        try:
            with self._keep_alive:
                result = self.processor.process(messages, self._replay)
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
            self._apply_rebalance()
            self.source.rewind(self._reset_state({tp: o for tp, o in _first_offsets(messages).items()
                                                  if tp not in moved}))
            return None
        # Offsets of input read again for state only stay where they were: the
        # committed offset keeps meaning "outputs delivered up to here".
        result.next_offsets = self._replay.committable(result.next_offsets)
        self._replay.advance(result.next_offsets)
        for (topic, partition), offset in result.next_offsets.items():
            if topic == self._input_topic:
                self._progress[partition] = offset
        return result

    def _on_assigned(self, committed: dict[TopicPartition, int | None]) -> Offsets:
        """Rebalance callback: read the new partitions' state; they start where their replay starts."""
        states = self._read_state({p: c for (t, p), c in committed.items() if t == self._input_topic})
        self._rebalance_ops.append(("restore", states))
        return self._starts(states)

    def _read_state(self, committed: dict[int, int | None]) -> dict[int, PartitionState]:
        """The changelog's state of these input partitions as of their committed offsets."""
        assert self.changelog is not None
        started = time.monotonic()
        states = self.changelog.read(committed)
        self.metrics.restore_seconds.observe(time.monotonic() - started)
        return states

    def _starts(self, states: dict[int, PartitionState]) -> Offsets:
        """Where restored partitions are read from: their last checkpoint, when they have one."""
        return {(self._input_topic, p): s.resume_at for p, s in states.items() if s.resume_at is not None}

    def _on_revoked(self, partitions: set[TopicPartition]) -> None:
        """Rebalance callback: the state of partitions that left goes with them."""
        self._rebalance_ops.append(("drop", {p for t, p in partitions if t == self._input_topic}))

    def _apply_rebalance(self) -> None:
        """Apply the restores and drops the rebalance callbacks decided, in order."""
        while self._rebalance_ops:
            op, arg = self._rebalance_ops.popleft()
            if op == "drop":
                for partition in arg:  # type: ignore[attr-defined]
                    assert self.changelog is not None
                    self.changelog.drop(partition)
                    self._replay.forget((self._input_topic, partition))
                    self._progress.pop(partition, None)
            else:
                self._restore(arg)  # type: ignore[arg-type]

    def _restore(self, states: dict[int, PartitionState]) -> None:
        """Load restored partitions' state and replay their input from the checkpoint to the commit."""
        assert self.changelog is not None
        self.changelog.apply_all(states)
        for state in states.values():
            self._replay_to_commit(state)

    def _replay_to_commit(self, state: PartitionState) -> None:
        """Read a restored partition again from its checkpoint to its commit, for state only."""
        tp = (self._input_topic, state.partition)
        self.metrics.state_restored.inc(len(state.entities))
        self._replay.forget(tp)
        self._progress.pop(state.partition, None)
        if state.resume_at is not None and state.committed is not None and state.resume_at < state.committed:
            self._replay.until[tp] = state.committed
            if state.skip:
                self._replay.skip[tp] = state.skip
        if state.entities or tp in self._replay.until:
            logger.info("restored %d entities of %s[%d]%s", len(state.entities), *tp,
                        f"; replaying offsets {state.resume_at}-{state.committed}" if tp in self._replay.until else "")

    def _reset_state(self, first: Offsets) -> Offsets:
        """After a batch is abandoned: its partitions' state back to their commit; where to read from.

        ``first`` is each partition's first offset in the batch. Without a
        changelog the windows keep the abandoned events (they count twice).
        """
        if self.changelog is None:
            return first
        committed = {p: self._replay.delivered((t, p), o) for (t, p), o in first.items() if t == self._input_topic}
        states = self._read_state(committed)
        self._restore(states)
        return {**first, **self._starts(states)}

    def _maybe_checkpoint(self) -> dict[int, int]:
        """Save changed state with the batch just sent, as the checkpoint schedule says.

        Returns the partitions saved, with the offsets their state reflects.
        """
        if self.changelog is None or not self._progress:
            return {}
        now = time.monotonic()
        due = self._schedule.due(self._progress, now)
        if not due:
            return {}
        progress = {p: self._progress.pop(p) for p in due}
        sink = self.sink if self.checkpoints is None else self.checkpoints.sink
        self.metrics.state_records.inc(self.changelog.checkpoint(sink, progress))
        if self.checkpoints is not None:
            self.checkpoints.sent((self._input_topic, p) for p in progress)
        self._schedule.saved(progress, now)
        return progress

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
        if self.drift_encoder is not None:
            for event in result.drift_events:
                self.sink.send(self.config.drift.topic, event.signal.encode(), self.drift_encoder.encode(event.to_record()))

    def _produce(self, result: BatchResult) -> None:
        """At-least-once: send; the batch is in flight until ``_complete_in_flight``."""
        self._send(result)
        self._maybe_checkpoint()
        self.stats.record_batch(result.consumed, result.model_seconds)
        self._in_flight = result

    def _complete_in_flight(self, wait_for_state: bool = False) -> None:
        """Wait for the batch in flight to be acknowledged, then commit its offsets.

        Offsets of partitions whose checkpoint is not acknowledged yet are
        held and committed by a later call; ``wait_for_state`` waits for it.
        """
        result, self._in_flight = self._in_flight, None
        offsets: Offsets = {}
        if result is not None:
            self.sink.flush()
            latencies = self.stats.record_acks(result.predictions.event_times_ms, time.time())
            self._record_metrics(result, latencies)
            offsets = result.next_offsets
        if self.checkpoints is not None:
            offsets = self.checkpoints.committable(offsets, wait=wait_for_state)
        self.source.commit(offsets)

    def _hand_over(self) -> None:
        """At revocation and stop: the batch in flight and every checkpoint acknowledged, their offsets committed."""
        self._complete_in_flight(wait_for_state=True)

    def _commit_transaction(self, result: BatchResult, messages: list) -> None:
        """Exactly-once: the batch's outputs and input offsets in one transaction; rewound if it aborts."""
        assert self.transactions is not None
        self.transactions.begin()
        self._send(result)
        saved = self._maybe_checkpoint()
        try:
            self.transactions.commit(result.next_offsets, self.source.group_metadata())
        except (TransactionAbortedError, TransactionStuckError) as exc:
            logger.warning("batch of %d not delivered (%s): reading it again", result.consumed, exc)
            self.metrics.transactions_aborted.inc()
            if isinstance(exc, TransactionStuckError):
                self._replace_producer()
            # A checkpoint aborted with the batch took its partitions' changes
            # with it: those partitions are reset too, from their commit.
            first = {(self._input_topic, p): o for p, o in saved.items()}
            self.source.rewind(self._reset_state({**first, **_first_offsets(messages)}))
            return
        self.stats.record_batch(result.consumed, result.model_seconds)
        latencies = self.stats.record_acks(result.predictions.event_times_ms, time.time())
        self._record_metrics(result, latencies)

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
            m.unlabelled.set(joiner.unlabelled)
            m.label_cache.set(len(joiner))
            for (version, metric), value in joiner.metric_values().items():
                m.online_metric.labels(version, metric).set(value)

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


def _first_offsets(messages: list) -> Offsets:
    """Each partition's first offset in ``messages``: where to rewind to when the batch is read again."""
    first: Offsets = {}
    for m in messages:
        first.setdefault((m.topic(), m.partition()), m.offset())
    return first


def build_service(config: ServiceConfig, schema_source: SchemaSource | None = None) -> ScoringService:
    """Load the model, connect, and wire the service; failures here are start-up errors."""
    kafka = config.kafka
    artifact = ModelArtifact.load(Path(config.model.path), config.features, config.schema_fingerprint)
    thread_limits = limit_model_threads(config.model.threads)
    codec_cfg = config.codec
    if codec_cfg.format == "confluent" and schema_source is None:
        assert codec_cfg.schema_registry_url is not None
        schema_source = RegistrySchemaSource(codec_cfg.schema_registry_url, codec_cfg.schema_registry)
    codec = AvroCodec(
        config.reader_schema,
        codec_cfg.format,
        writer_schema=config.writer_schema if codec_cfg.format == "raw" else None,
        schema_source=schema_source,
        dead_letter_unavailable=config.processing.registry_unavailable == "dead_letter",
    )
    output_id = None
    if codec_cfg.format == "confluent":
        assert schema_source is not None
        output_id = schema_source.register(f"{kafka.output_topic}-value", config.output_schema)
    encoder = AvroEncoder(config.output_schema, codec_cfg.format, output_id)
    drift_encoder = None
    if config.drift.enabled:
        drift_schema = read_schema(config.drift.schema, "drift.schema")
        drift_id = None
        if schema_source is not None and codec_cfg.format == "confluent":
            drift_id = schema_source.register(f"{config.drift.topic}-value", drift_schema)
        drift_encoder = AvroEncoder(drift_schema, codec_cfg.format, drift_id)
    processor = BatchProcessor(
        codec=codec,
        store=FeatureStore(config.features),
        scorer=BatchScorer(artifact, compiled=config.model.compiled),
        encoder=encoder,
        key_field=codec_cfg.key_field,
        time_field=codec_cfg.time_field,
        quality=_quality_tracker(config, artifact, schema_source),
        labels_topic=config.labels.topic,
        max_record_bytes=config.validation.max_record_bytes,
        ranges=config.validation.ranges,
    )
    processor.warm_up()
    base = {"bootstrap.servers": kafka.bootstrap_servers}
    if kafka.create_topics:
        topics = {kafka.output_topic: kafka.topic_partitions, kafka.dead_letter_topic: kafka.topic_partitions}
        if config.drift.enabled:
            topics[config.drift.topic] = 1
        ensure_topics({**base, **admin_settings(kafka.producer)}, topics)
    stats = RunStats()
    metrics = ServiceMetrics()
    metrics.model.info({"name": artifact.name, "version": artifact.version, "sha256": artifact.manifest["sha256"]})
    exactly_once = config.processing.guarantee == "exactly_once"
    producer = {**base, **kafka.producer}
    if exactly_once:
        producer["transactional.id"] = config.transactional_id
    sink = PredictionSink(producer)
    transactions = Transactions(sink) if exactly_once else None
    topics_in = list(kafka.input_topics) + ([config.labels.topic] if config.labels.topic else [])
    source = KafkaSource({**base, **kafka.consumer, "group.id": kafka.group_id}, topics_in)
    changelog = _changelog(config, processor) if config.state.changelog else None
    # exactly-once: checkpoints go in the batch's transaction, on its producer
    checkpoints = CheckpointDelivery(PredictionSink(producer)) if changelog is not None and not exactly_once else None
    service = ScoringService(config, processor, source, sink, stats, metrics, drift_encoder, transactions=transactions,
                             changelog=changelog, checkpoints=checkpoints)
    service.thread_limits = thread_limits  # the limits hold while this handle lives
    if config.metrics.enabled:
        try:
            service.health = HealthServer(config.metrics.host, config.metrics.port, metrics.registry,
                                          service.readiness)
        except OSError as exc:
            source.close()
            raise ConfigError(
                f"cannot serve metrics on {config.metrics.host}:{config.metrics.port} ({exc.strerror}); "
                "set metrics.port (0 picks a free one) or metrics.enabled = false"
            ) from exc
    return service


def _changelog(config: ServiceConfig, processor: BatchProcessor) -> Changelog:
    """The state changelog, its topic created (or checked) with one partition per input partition."""
    kafka, topic = config.kafka, config.state_topic
    base = {"bootstrap.servers": kafka.bootstrap_servers}
    admin = {**base, **admin_settings(kafka.producer)}
    input_topic = kafka.input_topics[0]
    counts = partition_counts(admin, [input_topic, topic])
    wanted = counts.get(input_topic)
    if wanted is None:
        logger.warning("input topic %s does not exist yet: the state changelog %s is sized for "
                       "kafka.topic_partitions = %d partitions", input_topic, topic, kafka.topic_partitions)
        wanted = kafka.topic_partitions
    if topic in counts:
        if counts[topic] != wanted:
            raise ConfigError(f"state changelog {topic} has {counts[topic]} partitions but {input_topic} has {wanted}: "
                              "they must match (one changelog partition per input partition); delete it, or set "
                              "state.topic to a new name")
    elif not kafka.create_topics:
        raise ConfigError(f"state changelog {topic} does not exist and kafka.create_topics is false: create it with "
                          f"{wanted} partitions and cleanup.policy=compact, or set state.changelog = false")
    else:
        ensure_topics(admin, {topic: wanted}, {topic: CHANGELOG_TOPIC_CONFIG})
    monitor = processor.quality.monitor if processor.quality is not None else None
    return Changelog(topic, processor.store, monitor, {**base, **admin_settings(kafka.consumer)},
                     config.state.restore_timeout_s)


def _quality_tracker(
    config: ServiceConfig, artifact: ModelArtifact, schema_source: SchemaSource | None
) -> QualityTracker | None:
    """Drift detectors and, with a labels topic, the label join; None when neither is on."""
    monitor = None
    if config.drift.enabled and config.drift.signals:
        monitor = DriftMonitor(
            config.drift.signals, artifact.name, artifact.version, config.features.fields,
            config.features.feature_names, artifact.manifest.get("reference"),
        )
    joiner = label_codec = None
    labels = config.labels
    if labels.topic is not None:
        joiner = LabelJoiner(str(artifact.manifest.get("task", "classification")),
                             artifact.manifest.get("classes", []), labels.cache_size, labels.max_age_s)
        label_codec = AvroCodec(read_schema(labels.schema, "labels.schema"), config.codec.format,
                                schema_source=schema_source)
    if monitor is None and joiner is None:
        return None
    return QualityTracker(monitor, artifact.version, joiner, label_codec, labels.id_field)

