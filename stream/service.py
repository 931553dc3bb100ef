"""The scoring service: the run loop that ties source, processor and sink together.

At-least-once: a batch's input offsets are committed only after every
prediction and dead letter it caused is acknowledged by the broker. A crash
anywhere before the commit means the batch is read and scored again.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from features import FeatureStore
from models import BatchScorer, ModelArtifact
from stream.admin import ensure_topics
from stream.codec import AvroCodec, AvroEncoder, RegistrySchemaSource, SchemaSource
from stream.config import ServiceConfig
from stream.processor import BatchProcessor
from stream.sink import PredictionSink
from stream.source import KafkaSource
from stream.stats import RunStats

__all__ = ["ScoringService", "build_service"]

logger = logging.getLogger(__name__)


class ScoringService:
    """Consumes micro-batches, scores them, produces outputs, commits."""

    def __init__(
        self,
        config: ServiceConfig,
        processor: BatchProcessor,
        source: KafkaSource,
        sink: PredictionSink,
        stats: RunStats,
    ) -> None:
        self.config = config
        self.processor = processor
        self.source = source
        self.sink = sink
        self.stats = stats
        self._stopping = False

    def stop(self) -> None:
        """Ask the loop to stop after the current batch (safe from a signal handler)."""
        self._stopping = True

    def run(self, max_events: int | None = None, idle_exit_seconds: float | None = None) -> RunStats:
        """Score until stopped, until ``max_events`` inputs are done, or until idle that long."""
        batch = self.config.batch
        kafka = self.config.kafka
        wait_s = batch.max_wait_ms / 1000.0
        last_message = time.monotonic()
        logger.info(
            "scoring %s -> %s with model %s %s (batch.max_size=%d, batch.max_wait_ms=%d)",
            ",".join(kafka.input_topics), kafka.output_topic, self.processor.model_name,
            self.processor.model_version, batch.max_size, batch.max_wait_ms,
        )
        try:
            while not self._stopping:
                size = batch.max_size
                if max_events is not None:
                    size = min(size, max_events - self.stats.consumed)
                    if size <= 0:
                        break
                messages = self.source.poll_batch(size, wait_s)
                if not messages:
                    if idle_exit_seconds is not None and time.monotonic() - last_message >= idle_exit_seconds:
                        logger.info("no input for %.1fs: stopping", idle_exit_seconds)
                        break
                    continue
                last_message = time.monotonic()
                self._score_batch(messages)
        finally:
            self.sink.close()
            self.source.close()
        logger.info("stopped: %s", self.stats.summary())
        return self.stats

    def _score_batch(self, messages: list) -> None:
        result = self.processor.process(messages)
        self.stats.record_batch(result.consumed, result.model_seconds)
        topic = self.config.kafka.output_topic
        for p in result.predictions:
            self.sink.send(topic, p.key, p.value, event_time_ms=p.event_time_ms)
        for d in result.dead_letters:
            self.sink.send(self.config.kafka.dead_letter_topic, d.key, d.value, headers=d.headers)
            self.stats.dead_letters[d.reason] += 1
        self.sink.flush()
        self.source.commit(result.next_offsets)


def build_service(config: ServiceConfig, schema_source: SchemaSource | None = None) -> ScoringService:
    """Load the model, connect, and wire the service; failures here are start-up errors."""
    kafka = config.kafka
    artifact = ModelArtifact.load(Path(config.model.path), config.features, config.schema_fingerprint)
    codec_cfg = config.codec
    if codec_cfg.format == "confluent" and schema_source is None:
        assert codec_cfg.schema_registry_url is not None
        schema_source = RegistrySchemaSource(codec_cfg.schema_registry_url, codec_cfg.schema_registry)
    codec = AvroCodec(
        config.reader_schema,
        codec_cfg.format,
        writer_schema=config.writer_schema if codec_cfg.format == "raw" else None,
        schema_source=schema_source,
    )
    output_id = None
    if codec_cfg.format == "confluent":
        assert schema_source is not None
        output_id = schema_source.register(f"{kafka.output_topic}-value", config.output_schema)
    encoder = AvroEncoder(config.output_schema, codec_cfg.format, output_id)
    processor = BatchProcessor(
        codec=codec,
        store=FeatureStore(config.features),
        scorer=BatchScorer(artifact),
        encoder=encoder,
        key_field=codec_cfg.key_field,
        time_field=codec_cfg.time_field,
    )
    base = {"bootstrap.servers": kafka.bootstrap_servers}
    if kafka.create_topics:
        ensure_topics(
            {**base, **_admin_settings(kafka.producer)},
            {kafka.output_topic: kafka.topic_partitions, kafka.dead_letter_topic: kafka.topic_partitions},
        )
    stats = RunStats()
    sink = PredictionSink({**base, **kafka.producer}, stats)
    source = KafkaSource({**base, **kafka.consumer, "group.id": kafka.group_id}, kafka.input_topics)
    return ScoringService(config, processor, source, sink, stats)


def _admin_settings(producer: dict) -> dict:
    """The security settings of the producer, which the admin client needs as well."""
    prefixes = ("security.", "sasl.", "ssl.", "client.")
    return {k: v for k, v in producer.items() if k.startswith(prefixes)}
