"""The wiring: build a ready ScoringService from the configuration; any failure here is a start-up error."""

from __future__ import annotations

import logging
from pathlib import Path

from features import FeatureStore
from models import BatchScorer, ModelArtifact, ModelStoreError
from models.checks import load_checked
from models.drift import DriftMonitor
from models.labels import LabelJoiner
from models.scorer import limit_model_threads
from models.store import ModelStore, open_store
from schemas import load_schema
from stream.avro.codec import AvroCodec, AvroEncoder, SchemaSource
from stream.config import ServiceConfig, read_schema
from stream.config.checks import cautions
from stream.exceptions import ConfigError
from stream.kafka.admin import admin_settings, ensure_topics, partition_counts
from stream.kafka.cluster import check_settings, missing_topics, probe
from stream.kafka.registry import registry_for
from stream.kafka.sink import PredictionSink
from stream.kafka.source import KafkaSource
from stream.kafka.transactions import Transactions
from stream.pipeline.columns import prediction_encoder
from stream.pipeline.processor import DEFAULT_MAX_OUTPUT_BYTES, BatchProcessor
from stream.pipeline.quality import QualityTracker
from stream.pipeline.shadow import Shadow
from stream.runtime.health import HealthServer
from stream.runtime.lifecycle import ModelLifecycle
from stream.runtime.metrics import ServiceMetrics
from stream.runtime.retraining import Retrainer
from stream.runtime.service import ScoringService
from stream.runtime.stats import RunStats
from stream.runtime.versions import CHALLENGER, CHAMPION, VersionWatcher
from stream.state.changelog import CHANGELOG_TOPIC_CONFIG, Changelog
from stream.state.checkpoints import CheckpointDelivery
from stream.state.keeper import StateKeeper
from stream.state.signing import StateSigner

__all__ = ["build_service"]

logger = logging.getLogger(__name__)


def build_service(config: ServiceConfig, schema_source: SchemaSource | None = None) -> ScoringService:
    """Load the model, connect, and wire the service; failures here are start-up errors."""
    kafka = config.kafka
    base = {"bootstrap.servers": kafka.bootstrap_servers}
    exactly_once = config.processing.guarantee == "exactly_once"
    producer = {**base, **kafka.producer}
    if exactly_once:
        producer["transactional.id"] = config.transactional_id
    consumer = {**base, **kafka.consumer, "group.id": kafka.group_id}
    check_settings(producer, consumer)
    store = _model_store(config)
    scorer = _first_scorer(config, store)
    artifact = scorer.artifact
    _check_cluster(config)
    thread_limits = limit_model_threads(config.model.threads)
    codec_cfg = config.codec
    schema_source = registry_for(codec_cfg, schema_source)
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
    shadow = _shadow(config, schema_source) if config.model.challenger_alias else None
    drift_encoder = None
    if config.drift.enabled:
        drift_schema = read_schema(config.drift.schema, "drift.schema")
        drift_id = None
        if schema_source is not None and codec_cfg.format == "confluent":
            drift_id = schema_source.register(f"{config.drift.topic}-value", drift_schema)
        drift_encoder = AvroEncoder(drift_schema, codec_cfg.format, drift_id)
    processor = BatchProcessor(
        codec=codec,
        store=FeatureStore(config.features, config.state.key_ttl_ms),
        scorer=scorer,
        encoder=encoder,
        key_field=codec_cfg.key_field,
        time_field=codec_cfg.time_field,
        quality=_quality_tracker(config, artifact, schema_source),
        labels_topic=config.labels.topic,
        validation=config.validation,
        max_output_bytes=int(kafka.producer.get("message.max.bytes", DEFAULT_MAX_OUTPUT_BYTES)),
        shadow=shadow,
    )
    for caution in cautions(config):
        logger.warning("%s", caution)
    processor.warm_up()
    if kafka.create_topics:
        topics = {kafka.output_topic: kafka.topic_partitions, kafka.dead_letter_topic: kafka.topic_partitions}
        if config.drift.enabled:
            topics[config.drift.topic] = 1
        if config.model.shadow_topic:
            topics[config.model.shadow_topic] = kafka.topic_partitions
        ensure_topics({**base, **admin_settings(kafka.producer)}, topics)
    stats = RunStats()
    metrics = ServiceMetrics()
    metrics.model.info({"name": artifact.name, "version": artifact.version, "sha256": artifact.manifest["sha256"]})
    sink = PredictionSink(producer)
    transactions = Transactions(sink) if exactly_once else None
    topics_in = list(kafka.input_topics) + ([config.labels.topic] if config.labels.topic else [])
    source = KafkaSource(consumer, topics_in)
    changelog = _changelog(config, processor, metrics) if config.state.changelog else None
    # exactly-once: checkpoints go in the batch's transaction, on its producer
    checkpoints = CheckpointDelivery(PredictionSink(producer)) if changelog is not None and not exactly_once else None
    state = StateKeeper(
        input_topic=kafka.input_topics[0], store=processor.store, changelog=changelog, checkpoints=checkpoints,
        checkpoint_interval_s=config.state.checkpoint_interval_ms / 1000.0,
        restore_seconds=metrics.restore_seconds, restored=metrics.state_restored, records=metrics.state_records,
        expired=metrics.keys_expired, live=metrics.keys_live,
    )
    service = ScoringService(
        config=config, processor=processor, source=source, sink=sink, state=state, stats=stats, metrics=metrics,
        drift_encoder=drift_encoder, transactions=transactions,
    )
    service.thread_limits = thread_limits
    service.lifecycle = _lifecycle(config, store, processor, metrics, shadow)
    if config.model.retrain_on_alarm:
        service.lifecycle.retrainer = Retrainer(config, lambda: service.stats.consumed,
                                                lambda outcome: metrics.retrains.labels(outcome).inc())
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


def _model_store(config: ServiceConfig) -> ModelStore | None:
    if config.model.store is None:
        return None
    try:
        return open_store(config.model.store)
    except ModelStoreError as exc:
        raise ConfigError(f"model.store: {exc}") from exc


def _load(config: ServiceConfig, path: Path, running: BatchScorer | None = None) -> BatchScorer:
    """A version loaded and checked (sha256, pin, features, schema, classes, probe)."""
    return load_checked(path, config.features, config.schema_fingerprint, expected_sha256=config.model.sha256,
                        running=running, compiled=config.model.compiled, allow_joblib=config.model.allow_joblib)


def _first_scorer(config: ServiceConfig, store: ModelStore | None) -> BatchScorer:
    """The model to start with: ``model.path``, or the version ``model.alias`` names in the store."""
    model = config.model
    if store is None:
        return _load(config, Path(model.path))
    assert model.name is not None
    try:
        return _load(config, store.resolve(model.name, model.alias).path)
    except ModelStoreError as exc:
        raise ConfigError(f"model.store {model.store}: {exc}") from exc


def _shadow(config: ServiceConfig, schema_source: SchemaSource | None) -> Shadow:
    """The challenger's thread; with model.shadow_topic, its predictions encoded for that topic."""
    topic = config.model.shadow_topic
    if topic is None:
        return Shadow()
    schema = load_schema("shadow_prediction")
    schema_id = None
    if config.codec.format == "confluent":
        assert schema_source is not None
        schema_id = schema_source.register(f"{topic}-value", schema)
    shadow_encoder = AvroEncoder(schema, config.codec.format, schema_id)
    return Shadow(lambda scorer: prediction_encoder(shadow_encoder.schema, shadow_encoder.prefix, scorer,
                                                    role=config.model.challenger_alias))


def _lifecycle(config: ServiceConfig, store: ModelStore | None, processor: BatchProcessor,
               metrics: ServiceMetrics, shadow: Shadow | None) -> ModelLifecycle:
    """Alias following (unless the model is a fixed path or pinned by sha256) and the challenger's metrics."""
    model = config.model
    lifecycle = ModelLifecycle(config=model, processor=processor, metrics=metrics, watcher=None, shadow=shadow)
    if store is None or model.name is None:
        return lifecycle
    aliases = {CHAMPION: model.alias}
    if model.challenger_alias is not None:
        aliases[CHALLENGER] = model.challenger_alias
    if model.sha256 is not None:
        aliases = {role: alias for role, alias in aliases.items() if role != CHAMPION}
        logger.info("model.sha256 pins the champion: alias %s is not followed", model.alias)
    if aliases:
        lifecycle.watcher = VersionWatcher(
            store=store, model=model.name, aliases=aliases, interval_s=model.poll_interval_s,
            load=lambda path, running: _load(config, path, running),
            running={CHAMPION: processor.scorer}, on_refused=lifecycle.refused)
        if CHALLENGER in aliases:
            lifecycle.watcher.check_now()  # the challenger is loaded at once, off the start-up path
    return lifecycle


def _check_cluster(config: ServiceConfig) -> None:
    """A broker answers, and every input topic exists: else one line, before anything is created."""
    kafka = config.kafka
    existing = probe({"bootstrap.servers": kafka.bootstrap_servers, **admin_settings(kafka.producer)},
                     kafka.connect_timeout_s)
    wanted = [*kafka.input_topics, *([config.labels.topic] if config.labels.topic else [])]
    missing = missing_topics(existing, wanted)
    if missing:
        raise ConfigError(f"input topic{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                          f"{'do' if len(missing) > 1 else 'does'} not exist on {kafka.bootstrap_servers}: create "
                          f"{'them' if len(missing) > 1 else 'it'} (streamscore creates only the topics it "
                          "writes), or fix kafka.input_topics / labels.topic")


def _changelog(config: ServiceConfig, processor: BatchProcessor, metrics: ServiceMetrics) -> Changelog:
    """The state changelog, its topic created (or checked) with one partition per input partition."""
    kafka, topic = config.kafka, config.state_topic
    base = {"bootstrap.servers": kafka.bootstrap_servers}
    admin = {**base, **admin_settings(kafka.producer)}
    input_topic = kafka.input_topics[0]
    counts = partition_counts(admin, [input_topic, topic])
    wanted = counts.get(input_topic)
    if wanted is None:  # checked at start-up; deleted since
        raise ConfigError(f"input topic {input_topic} does not exist on {kafka.bootstrap_servers}")
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
    signer = StateSigner(config.state.signing_secret)
    if monitor is not None and not signer.enabled:
        logger.warning("state.signing_secret is not set: drift detectors are not saved to %s and start afresh when "
                       "a partition moves (set STREAMSCORE_STATE__SIGNING_SECRET to keep them)", topic)
    return Changelog(topic=topic, store=processor.store, monitor=monitor, reader_settings={**base, **admin_settings(kafka.consumer)},
                     timeout_s=config.state.restore_timeout_s, signer=signer,
                     on_refused=lambda _partition, _why: metrics.state_refused.inc())


def _quality_tracker(
    config: ServiceConfig, artifact: ModelArtifact, schema_source: SchemaSource | None
) -> QualityTracker | None:
    """Drift detectors and, with a labels topic, the label join; None when neither is on."""
    monitor = None
    if config.drift.enabled and config.drift.signals:
        monitor = DriftMonitor(
            signals=config.drift.signals, model_name=artifact.name, model_version=artifact.version, input_fields=config.features.fields,
            feature_names=config.features.feature_names, reference=artifact.manifest.get("reference"),
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

