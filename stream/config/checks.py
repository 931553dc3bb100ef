"""Checks across keys and against the schemas, run once the configuration is built."""

from __future__ import annotations

import re
from typing import Any

from stream.config.sections import (
    GUARANTEES,
    MAX_BATCH_SIZE,
    REGISTRY_POLICIES,
    SIMULATOR_KINDS,
    ServiceConfig,
    ValidationConfig,
    read_schema,
)
from stream.exceptions import ConfigError

__all__ = ["cautions", "validate"]

_NUMERIC = ("double", "float", "int", "long")


def cautions(config: ServiceConfig) -> list[str]:
    """Settings that are valid but work against each other: the scorer logs each at start-up."""
    out = []
    state, validation = config.state, config.validation
    if 0 < state.key_ttl_s <= validation.max_event_ahead_s:
        out.append(f"state.key_ttl_s ({state.key_ttl_s:g} s) is not above validation.max_event_ahead_s "
                   f"({validation.max_event_ahead_s:g} s): one event stamped that far ahead moves its partition's "
                   "clock far enough to expire every other key of the partition")
    return out


def validate(config: ServiceConfig) -> None:
    """Raise ConfigError, naming the key, for the first setting that does not fit the others or the schemas."""
    codec, batch, kafka = config.codec, config.batch, config.kafka
    if codec.format not in ("raw", "confluent"):
        raise ConfigError(f"codec.format must be 'raw' or 'confluent', got {codec.format!r}")
    if codec.format == "confluent" and not codec.schema_registry_url:
        raise ConfigError("codec.format = 'confluent' needs codec.schema_registry_url")
    if not 1 <= batch.max_size <= MAX_BATCH_SIZE:
        raise ConfigError(f"batch.max_size must be between 1 and {MAX_BATCH_SIZE}, got {batch.max_size}")
    if not 0 <= batch.max_wait_ms <= 60_000:
        raise ConfigError(f"batch.max_wait_ms must be between 0 and 60000, got {batch.max_wait_ms}")
    if config.model.threads < 1:
        raise ConfigError(f"model.threads must be >= 1, got {config.model.threads}")
    _check_model(config)
    _check_state(config)
    if not 0 < kafka.connect_timeout_s <= 300:
        raise ConfigError(f"kafka.connect_timeout_s must be in (0, 300] seconds, got {kafka.connect_timeout_s}")
    if kafka.topic_partitions < 1:
        raise ConfigError(f"kafka.topic_partitions must be >= 1, got {kafka.topic_partitions}")
    for key in ("enable.auto.commit", "enable.auto.offset.store", "group.id", "bootstrap.servers"):
        if key in kafka.consumer:
            raise ConfigError(f"kafka.consumer.{key} is managed by streamscore; set it through [kafka] or remove it")
    schema = config.reader_schema
    fields = {f["name"]: f["type"] for f in schema.get("fields", [])}
    for what, name in (("codec.key_field", codec.key_field), ("codec.time_field", codec.time_field)):
        if name not in fields:
            raise ConfigError(f"{what} = {name!r} is not a field of the reader schema {codec.reader_schema} ({sorted(fields)})")
    for name in config.features.fields:
        if name not in fields:
            raise ConfigError(f"feature field {name!r} is not a field of the reader schema {codec.reader_schema} ({sorted(fields)})")
        if _base_type(fields[name]) not in _NUMERIC:
            raise ConfigError(f"feature field {name!r} has Avro type {fields[name]!r}; features need a numeric type")
    config.writer_schema  # noqa: B018 - fails early on an unreadable writer schema
    config.output_schema  # noqa: B018
    labels = config.labels
    if labels.topic is not None:
        if labels.topic in kafka.input_topics:
            raise ConfigError(f"labels.topic {labels.topic!r} is also an input topic")
        if labels.id_field is not None and labels.id_field not in fields:
            raise ConfigError(f"labels.id_field = {labels.id_field!r} is not a field of the reader schema")
        if labels.cache_size < 1 or labels.max_age_s <= 0:
            raise ConfigError("labels.cache_size must be >= 1 and labels.max_age_s > 0")
        read_schema(labels.schema, "labels.schema")
    if not 0 <= config.metrics.port <= 65535:
        raise ConfigError(f"metrics.port must be a TCP port (0 for any free one), got {config.metrics.port}")
    read_schema(config.drift.schema, "drift.schema")
    if config.simulator.kind not in SIMULATOR_KINDS:
        raise ConfigError(f"simulator.kind must be one of {list(SIMULATOR_KINDS)}, got {config.simulator.kind!r}")
    _validate_processing(config)
    _validate_ranges(config.validation, config.features.fields)


def _validate_processing(config: ServiceConfig) -> None:
    processing, kafka = config.processing, config.kafka
    if processing.guarantee not in GUARANTEES:
        raise ConfigError(f"processing.guarantee must be one of {list(GUARANTEES)}, got {processing.guarantee!r}")
    if processing.registry_unavailable not in REGISTRY_POLICIES:
        raise ConfigError(f"processing.registry_unavailable must be one of {list(REGISTRY_POLICIES)}, "
                          f"got {processing.registry_unavailable!r}")
    if processing.shutdown_timeout_s <= 0 or processing.registry_retry_s <= 0:
        raise ConfigError("processing.shutdown_timeout_s and processing.registry_retry_s must be > 0")
    if "transactional.id" in kafka.producer:
        raise ConfigError("kafka.producer.transactional.id is managed by streamscore; "
                          "set processing.transactional_id (exactly_once only) or remove it")
    if processing.transactional_id is not None and processing.guarantee != "exactly_once":
        raise ConfigError("processing.transactional_id is only used with processing.guarantee = 'exactly_once'")
    state = config.state
    if state.changelog and len(kafka.input_topics) != 1:
        raise ConfigError(f"state.changelog keeps one changelog partition per input partition, so it needs exactly "
                          f"one input topic (kafka.input_topics = {list(kafka.input_topics)}); "
                          "use one input topic or set state.changelog = false")
    if state.checkpoint_interval_ms < 0 or state.restore_timeout_s <= 0:
        raise ConfigError("state.checkpoint_interval_ms must be >= 0 and state.restore_timeout_s > 0")
    if not 0 <= state.key_ttl_s < 2**53 / 1000:
        raise ConfigError(f"state.key_ttl_s must be >= 0 seconds of event time (0: keys never expire), "
                          f"got {state.key_ttl_s!r}")
    if state.changelog and config.state_topic in (*kafka.input_topics, kafka.output_topic, kafka.dead_letter_topic):
        raise ConfigError(f"state.topic {config.state_topic!r} is already used by [kafka]; name another")
    validation = config.validation
    if validation.max_key_bytes < 1 or validation.dead_letter_max_bytes < 0:
        raise ConfigError("validation.max_key_bytes must be >= 1 and validation.dead_letter_max_bytes >= 0")
    if validation.max_event_ahead_s <= 0 or validation.max_event_age_s < 0:
        raise ConfigError("validation.max_event_ahead_s must be > 0 and validation.max_event_age_s >= 0 (0: any age)")
    if config.validation.max_record_bytes < 0:
        raise ConfigError(f"validation.max_record_bytes must be >= 0 (0: no limit), "
                          f"got {config.validation.max_record_bytes}")


def _validate_ranges(validation: ValidationConfig, fields: tuple[str, ...]) -> None:
    for name, bounds in validation.ranges.items():
        if name not in fields:
            raise ConfigError(f"validation.ranges.{name}: {name!r} is not a feature field ({list(fields)})")
        if (not isinstance(bounds, list) or len(bounds) != 2
                or not all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds)
                or not bounds[0] <= bounds[1]):
            raise ConfigError(f"validation.ranges.{name} must be [min, max] with min <= max, got {bounds!r}")


def _base_type(avro_type: Any) -> str:
    if isinstance(avro_type, dict):
        return str(avro_type.get("type"))
    if isinstance(avro_type, list):  # ["null", "double"]: the non-null branch
        rest = [t for t in avro_type if t != "null"]
        return _base_type(rest[0]) if len(rest) == 1 else "union"
    return str(avro_type)


def _check_state(config: ServiceConfig) -> None:
    secret = config.state.signing_secret
    if secret is not None and len(secret) < 16:
        raise ConfigError(f"state.signing_secret must be at least 16 characters, got {len(secret)}")


def _check_model(config: ServiceConfig) -> None:
    model = config.model
    if config.training.format not in ("skops", "joblib"):
        raise ConfigError(f"training.format must be 'skops' or 'joblib', got {config.training.format!r}")
    if model.store is not None and not model.name:
        raise ConfigError("model.store is set but model.name is not: name the model to load from the store")
    if model.store is None:
        for key in ("challenger_alias", "shadow_topic"):
            if getattr(model, key) is not None:
                raise ConfigError(f"model.{key} needs model.store: a challenger is an alias in a model store")
    if model.challenger_alias is not None and model.challenger_alias == model.alias:
        raise ConfigError(f"model.challenger_alias and model.alias are both {model.alias!r}: name two aliases")
    if model.shadow_topic is not None and model.challenger_alias is None:
        raise ConfigError("model.shadow_topic is set but model.challenger_alias is not: name the challenger's alias")
    if model.shadow_topic is not None and model.shadow_topic in (config.kafka.output_topic, *config.kafka.input_topics):
        raise ConfigError(f"model.shadow_topic {model.shadow_topic!r} is also the output or an input topic")
    if not 0.1 <= model.poll_interval_s <= 86_400:
        raise ConfigError(f"model.poll_interval_s must be between 0.1 and 86400 seconds, got {model.poll_interval_s}")
    if model.sha256 is not None and not re.fullmatch(r"[0-9a-f]{64}", model.sha256):
        raise ConfigError(f"model.sha256 must be 64 lowercase hex digits, got {model.sha256!r}")
    if model.promote_after_labels < 0 or not 0 <= model.promote_margin < 1:
        raise ConfigError("model.promote_after_labels must be >= 0 and model.promote_margin in [0, 1)")
    if model.retrain_on_alarm:
        if model.store is None or config.labels.topic is None:
            raise ConfigError("model.retrain_on_alarm needs model.store and labels.topic: it trains on the labels "
                              "and registers the result in the store")
        if not any(s.source == "error" for s in config.drift.signals) or not config.drift.enabled:
            raise ConfigError("model.retrain_on_alarm needs drift on and an error signal ([[drift.signals]] with "
                              "source = 'error')")
        if model.retrain_after_events < 100:
            raise ConfigError(f"model.retrain_after_events must be >= 100, got {model.retrain_after_events}")
        if model.retrain_alias == model.alias:
            raise ConfigError("model.retrain_alias is the alias the scorer follows: a retrained version would go "
                              "live untested; name another (challenger)")
    if model.promote_after_labels and (model.challenger_alias is None or config.labels.topic is None):
        raise ConfigError("model.promote_after_labels needs model.challenger_alias and a labels topic")
