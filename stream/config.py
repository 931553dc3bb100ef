"""The service configuration: one typed, frozen object from a TOML file plus environment overrides.

Precedence, lowest first: defaults, the TOML file, ``KAFKA_BOOTSTRAP_SERVERS``
(the variable ``scripts/local-kafka`` prints), then ``STREAMSCORE_<SECTION>__<KEY>``
variables, e.g. ``STREAMSCORE_KAFKA__BOOTSTRAP_SERVERS`` or
``STREAMSCORE_BATCH__MAX_SIZE=500``. Values from the environment are read as
TOML values when they parse as one (numbers, booleans, arrays), else as
strings. librdkafka settings go in the ``kafka.consumer`` / ``kafka.producer``
tables with their dotted names; from the environment, write the dots as
underscores: ``STREAMSCORE_KAFKA__PRODUCER__SASL_PASSWORD`` sets
``sasl.password``. Nothing else in streamscore reads ``os.environ``.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import json
import math
import socket
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from features import FeatureSpec, FeatureSpecError
from models.drift import DriftConfigError, SignalSpec
from schemas import fingerprint, schema_path
from stream.exceptions import ConfigError

__all__ = [
    "KafkaConfig",
    "CodecConfig",
    "BatchConfig",
    "ModelConfig",
    "TrainingConfig",
    "SimulatorConfig",
    "LabelsConfig",
    "DriftConfig",
    "MetricsConfig",
    "ProcessingConfig",
    "StateConfig",
    "ValidationConfig",
    "ServiceConfig",
    "default_signals",
    "read_schema",
    "load_config",
    "redact",
]

ENV_PREFIX = "STREAMSCORE_"
# librdkafka and Schema Registry settings whose values never reach a log or repr.
_SECRET_WORDS = ("password", "secret", "token", "user.info", "key.pem", "private", "oauthbearer.config")
# Upper bound on batch.max_size: far beyond where batching stops paying off,
# low enough that one batch's outputs fit the producer queue comfortably.
MAX_BATCH_SIZE = 100_000


def redact(settings: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of librdkafka-style settings with secret values replaced by ``***``."""
    return {k: ("***" if any(w in k.lower() for w in _SECRET_WORDS) else v) for k, v in settings.items()}


@dataclass(frozen=True)
class KafkaConfig:
    """Where to read and write, and librdkafka settings passed through unchanged."""

    bootstrap_servers: str = "127.0.0.1:9092"
    group_id: str = "streamscore"
    input_topics: tuple[str, ...] = ()
    output_topic: str = "predictions"
    dead_letter_topic: str = "streamscore-dead-letters"
    # Create missing output and dead-letter topics at start-up with this many partitions.
    create_topics: bool = True
    topic_partitions: int = 8
    consumer: Mapping[str, Any] = field(default_factory=dict, repr=False)
    producer: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        return (
            f"KafkaConfig(bootstrap_servers={self.bootstrap_servers!r}, group_id={self.group_id!r}, "
            f"input_topics={self.input_topics!r}, output_topic={self.output_topic!r}, "
            f"dead_letter_topic={self.dead_letter_topic!r}, consumer={redact(self.consumer)!r}, "
            f"producer={redact(self.producer)!r})"
        )


@dataclass(frozen=True)
class CodecConfig:
    """How input values are encoded, and which event fields are key and time."""

    # "raw": schemaless Avro written with writer_schema; "confluent": magic
    # byte 0, 4-byte schema id, Avro body, writer schema from the registry.
    format: str = "raw"
    # A bundled schema name ("sensor_reading") or a path to an .avsc file.
    reader_schema: str = "sensor_reading"
    # raw format only: the producers' schema; defaults to the reader schema.
    writer_schema: str | None = None
    schema_registry_url: str | None = None
    schema_registry: Mapping[str, Any] = field(default_factory=dict, repr=False)
    key_field: str = "sensor_id"
    time_field: str = "ts"
    # The prediction schema; outputs use the same format as inputs.
    output_schema: str = "prediction"


@dataclass(frozen=True)
class BatchConfig:
    """Micro-batching: up to max_size events, waiting at most max_wait_ms for them."""

    max_size: int = 1000
    max_wait_ms: int = 50


GUARANTEES = ("at_least_once", "exactly_once")
REGISTRY_POLICIES = ("pause", "dead_letter")


@dataclass(frozen=True)
class ProcessingConfig:
    """Delivery guarantee, and what the service does when things go wrong."""

    # "at_least_once": offsets are committed after the outputs are acknowledged
    # (a crash repeats outputs, never loses them). "exactly_once": outputs,
    # dead letters, drift events and input offsets commit in one Kafka
    # transaction per batch; readers use isolation.level=read_committed.
    guarantee: str = "at_least_once"
    # exactly_once: the producer's transactional.id. It must be stable across
    # restarts of one instance (a restart then aborts what the old process left
    # open) and unique among instances. Default: "<group_id>-<host name>".
    transactional_id: str | None = None
    # After SIGTERM/SIGINT: finish (or abort) the current batch, flush, commit,
    # and exit 0 within this many seconds; past it the process exits 1 and the
    # uncommitted batch is scored again by the next owner.
    shutdown_timeout_s: float = 30.0
    # When the schema registry stays unreachable after its retries: "pause"
    # rewinds the batch and retries it later (nothing is dead-lettered for an
    # outage); "dead_letter" sends the records whose schema is unknown to the
    # dead-letter topic and goes on.
    registry_unavailable: str = "pause"
    # How long "pause" waits before trying the batch again.
    registry_retry_s: float = 5.0


@dataclass(frozen=True)
class StateConfig:
    """Where window and drift state is kept so that it follows its partition across processes."""

    # Write each input partition's changed window state (and its drift
    # detectors) to a compacted changelog topic, and restore it when the
    # partition is assigned: a restart or rebalance then changes no prediction.
    changelog: bool = True
    # Default "<group_id>-state". One partition per input partition.
    topic: str | None = None
    # Each partition's state is saved with the first batch after this long
    # (0: with every batch). A restore reads again at most this much input.
    # On a 1,000,000-event backlog, 1 s checkpoints cost 6-15% of throughput
    # and 5 s ones 0.5% (bench/state_cost.py).
    checkpoint_interval_ms: int = 5000
    # How long a restore may wait for committed offsets and the changelog.
    restore_timeout_s: float = 120.0


@dataclass(frozen=True)
class ValidationConfig:
    """Rules that send records to the dead-letter topic instead of the model."""

    # Records (message values) larger than this many bytes are dead-lettered
    # without decoding; 0 turns the check off.
    max_record_bytes: int = 1_048_576
    # Allowed range per numeric field, inclusive: temperature = [-40.0, 150.0].
    # Values outside it are dead-lettered. Non-finite values always are.
    ranges: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelConfig:
    """Where the model artifact directory is, and how many threads its calls may use."""

    path: str = "artifacts/model"
    # OpenMP/BLAS threads for model calls (threadpoolctl). One leaves the other
    # core to librdkafka and the broker; several threads on two shared cores
    # made a one-row HistGradientBoosting call ~10x slower under load.
    threads: int = 1
    # Predict HistGradientBoosting models with the compiled tree kernel
    # (models/trees.py; same outputs bit for bit); false keeps scikit-learn's.
    compiled: bool = True


@dataclass(frozen=True)
class TrainingConfig:
    """How ``streamscore train`` builds its data set and model."""

    # "simulator": events and labels from the seeded simulator;
    # "avro": an Avro container file of events with a label field;
    # "river": the market replay of river's bundled SP500Stocks.
    source: str = "simulator"
    events: int = 50_000
    keys: int = 100
    rate: float = 1000.0
    seed: int = 42
    avro_path: str | None = None
    label_field: str = "label"
    task: str = "classification"
    estimator: str = "hist_gradient_boosting"
    params: Mapping[str, Any] = field(default_factory=dict)
    test_fraction: float = 0.2
    name: str = "model"
    version: str = "1"


@dataclass(frozen=True)
class SimulatorConfig:
    """Defaults for ``streamscore simulate``; its flags override them."""

    kind: str = "sensor"
    keys: int = 100
    rate: float = 1000.0
    seed: int = 42
    partitions: int = 8


@dataclass(frozen=True)
class LabelsConfig:
    """Delayed ground truth: an optional labels topic joined with recent predictions."""

    topic: str | None = None  # None: no labels, no error metrics
    # The event field that identifies an event; by default "<topic>/<partition>/<offset>".
    id_field: str | None = None
    cache_size: int = 100_000  # predictions held for their label, at most
    max_age_s: float = 3600.0  # and for at most this long
    schema: str = "label"


@dataclass(frozen=True)
class DriftConfig:
    """Drift detection: which signals, which river detectors, where alarms go."""

    enabled: bool = True
    topic: str = "streamscore-drift"
    schema: str = "drift_event"
    signals: tuple[SignalSpec, ...] = ()


@dataclass(frozen=True)
class MetricsConfig:
    """The /metrics, /healthz and /readyz HTTP endpoint."""

    enabled: bool = True
    host: str = "0.0.0.0"
    port: int = 9400  # 0: any free port (logged at start-up)


@dataclass(frozen=True)
class ServiceConfig:
    """Everything the service, the trainer and the simulator need."""

    kafka: KafkaConfig
    codec: CodecConfig
    batch: BatchConfig
    features: FeatureSpec
    model: ModelConfig
    training: TrainingConfig
    simulator: SimulatorConfig
    labels: LabelsConfig = field(default_factory=LabelsConfig)
    drift: DriftConfig = field(default_factory=DriftConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    processing: ProcessingConfig = field(default_factory=ProcessingConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    state: StateConfig = field(default_factory=StateConfig)
    log_level: str = "INFO"
    source: str = "<defaults>"

    @property
    def reader_schema(self) -> dict[str, Any]:
        return read_schema(self.codec.reader_schema, "codec.reader_schema")

    @property
    def writer_schema(self) -> dict[str, Any]:
        if self.codec.writer_schema is None:
            return self.reader_schema
        return read_schema(self.codec.writer_schema, "codec.writer_schema")

    @property
    def output_schema(self) -> dict[str, Any]:
        return read_schema(self.codec.output_schema, "codec.output_schema")

    @property
    def transactional_id(self) -> str:
        """exactly_once: processing.transactional_id, or "<group_id>-<host name>"."""
        return self.processing.transactional_id or f"{self.kafka.group_id}-{socket.gethostname()}"

    @property
    def state_topic(self) -> str:
        """state.topic, or "<group_id>-state"."""
        return self.state.topic or f"{self.kafka.group_id}-state"

    @property
    def schema_fingerprint(self) -> str:
        return fingerprint(self.reader_schema)


_SECTIONS: dict[str, type] = {
    "kafka": KafkaConfig,
    "codec": CodecConfig,
    "batch": BatchConfig,
    "model": ModelConfig,
    "training": TrainingConfig,
    "simulator": SimulatorConfig,
    "labels": LabelsConfig,
    "metrics": MetricsConfig,
    "processing": ProcessingConfig,
    "validation": ValidationConfig,
    "state": StateConfig,
}
# Sections the environment can override ([features] is structural: set it in the file).
_ENV_SECTIONS = set(_SECTIONS) | {"drift"}
_PASSTHROUGH = {("kafka", "consumer"), ("kafka", "producer"), ("codec", "schema_registry"), ("training", "params")}
_FEATURE_KEYS = {"fields", "windows", "aggregates", "ewma_alpha"}
_WINDOW_KEYS = {"kind", "size", "seconds", "aggregates", "ewma_alpha"}
_DRIFT_KEYS = {"enabled", "topic", "schema", "signals"}
_SIGNAL_KEYS = {"source", "name", "detector", "params", "sample_every"}


def load_config(path: str | Path | None, environ: Mapping[str, str] | None = None) -> ServiceConfig:
    """Read, merge and validate the configuration; raise ConfigError with an actionable message."""
    data: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        source = str(path)
        try:
            data = tomllib.loads(Path(path).read_text())
        except FileNotFoundError as exc:
            raise ConfigError(f"config file {path} does not exist") from exc
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    _apply_environment(data, dict(environ or {}))
    config = _build(data, source)
    _validate(config)
    return config


def _apply_environment(data: dict[str, Any], environ: dict[str, str]) -> None:
    if environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        data.setdefault("kafka", {})["bootstrap_servers"] = environ["KAFKA_BOOTSTRAP_SERVERS"]
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX):].split("__")]
        if len(parts) == 3 and tuple(parts[:2]) in _PASSTHROUGH:
            parts[2] = parts[2].replace("_", ".")
        if len(parts) == 1 and parts[0] == "log_level":
            data["log_level"] = raw
            continue
        if len(parts) < 2 or parts[0] not in _ENV_SECTIONS:
            raise ConfigError(
                f"environment variable {name} does not name a setting; "
                f"use {ENV_PREFIX}<SECTION>__<KEY> with a section of {sorted(_ENV_SECTIONS)}"
            )
        node = data
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"environment variable {name} overrides a value that is not a table")
        node[parts[-1]] = _parse_env_value(raw)


def _parse_env_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _build(data: dict[str, Any], source: str) -> ServiceConfig:
    special = {"features", "drift", "log_level"}
    unknown = set(data) - set(_SECTIONS) - special
    if unknown:
        raise ConfigError(
            f"unknown key {sorted(unknown)[0]!r} in {source}; top-level keys are {sorted(set(_SECTIONS) | special)}"
        )
    sections = {name: _build_section(name, cls, data.get(name, {}), source) for name, cls in _SECTIONS.items()}
    features = data.get("features")
    if features is None:
        raise ConfigError(f"{source} has no [features] table: declare fields and windows")
    log_level = data.get("log_level", "INFO")
    if not isinstance(log_level, str) or log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"log_level must be DEBUG, INFO, WARNING or ERROR, got {log_level!r}")
    features_spec = _build_features(features, source)
    return ServiceConfig(
        features=features_spec,
        drift=_build_drift(data.get("drift", {}), features_spec, source),
        log_level=log_level.upper(),
        source=source,
        **sections,
    )


def _build_section(name: str, cls: type, table: Any, source: str) -> Any:
    if not isinstance(table, dict):
        raise ConfigError(f"[{name}] in {source} must be a table, got {table!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in fields:
            raise ConfigError(f"unknown key '{name}.{key}' in {source}; [{name}] takes {sorted(fields)}")
        values[key] = _coerce(f"{name}.{key}", hints[key], value)
    return cls(**values)


def _coerce(where: str, hint: Any, value: Any) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(where, inner, value)
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    elif origin is tuple:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
    elif origin in (collections.abc.Mapping, dict):
        if isinstance(value, dict):
            return {str(k): v for k, v in value.items()}
    else:  # pragma: no cover - a field type this loader does not know
        raise TypeError(f"config field {where} has unsupported type {hint}")
    expected = getattr(hint, "__name__", str(hint))
    raise ConfigError(f"{where} must be {expected}, got {json.dumps(value, default=str)}")


def _build_features(table: Any, source: str) -> FeatureSpec:
    if not isinstance(table, dict):
        raise ConfigError(f"[features] in {source} must be a table")
    _check_keys(table, "features", _FEATURE_KEYS, source, "[features]")
    _check_tables(table.get("windows", []), "features.windows", _WINDOW_KEYS, source, "a window")
    try:
        return FeatureSpec.from_dict(table)
    except FeatureSpecError as exc:
        raise ConfigError(f"[features] in {source}: {exc}") from exc


def _check_keys(table: dict[str, Any], where: str, allowed: set[str], source: str, what: str) -> None:
    for key in table:
        if key not in allowed:
            raise ConfigError(f"unknown key '{where}.{key}' in {source}; {what} takes {sorted(allowed)}")


def _check_tables(items: Any, where: str, allowed: set[str], source: str, what: str) -> None:
    """Every item of an array of tables is a table with known keys only."""
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ConfigError(f"{where}[{i}] in {source} must be a table")
        _check_keys(item, f"{where}[{i}]", allowed, source, what)


def default_signals(spec: FeatureSpec) -> tuple[SignalSpec, ...]:
    """What is watched when [drift] lists no signals: the score, every feature field, and (once
    labels arrive) the 0/1 error, each with ADWIN. DDM is not the default for errors: it raises
    false alarms while its error-rate estimate settles, and more the lower the error rate."""
    return (
        SignalSpec("score", detector="adwin"),
        *(SignalSpec("input", name, detector="adwin") for name in spec.fields),
        SignalSpec("error", detector="adwin"),
    )


def _build_drift(table: Any, spec: FeatureSpec, source: str) -> DriftConfig:
    if not isinstance(table, dict):
        raise ConfigError(f"[drift] in {source} must be a table")
    _check_keys(table, "drift", _DRIFT_KEYS, source, "[drift]")
    base = _build_section("drift", DriftConfig, {k: v for k, v in table.items() if k != "signals"}, source)
    raw_signals = table.get("signals")
    if raw_signals is None:
        signals = default_signals(spec)
    else:
        if isinstance(raw_signals, dict):  # from the environment: one table per signal index
            raw_signals = [raw_signals[k] for k in sorted(raw_signals, key=int)]
        _check_tables(raw_signals, "drift.signals", _SIGNAL_KEYS, source, "a signal")
        signals_list = []
        for i, item in enumerate(raw_signals):
            try:
                signals_list.append(SignalSpec(**{k: (dict(v) if k == "params" else v) for k, v in item.items()}))
            except (DriftConfigError, TypeError) as exc:
                raise ConfigError(f"drift.signals[{i}] in {source}: {exc}") from exc
        signals = tuple(signals_list)
    for s in signals:
        if s.source == "input" and s.name not in spec.fields:
            raise ConfigError(f"drift signal input:{s.name} is not one of features.fields {list(spec.fields)}")
        if s.source == "feature" and s.name not in spec.feature_names:
            raise ConfigError(f"drift signal feature:{s.name} is not a feature of the spec")
    return dataclasses.replace(base, signals=signals)


def read_schema(name: str, where: str) -> dict[str, Any]:
    path = Path(name)
    if not path.suffix:
        try:
            path = schema_path(name)
        except FileNotFoundError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"{where}: schema file {path} does not exist") from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{where}: cannot read schema {path}: {exc}") from exc


_NUMERIC = ("double", "float", "int", "long")


def _validate(config: ServiceConfig) -> None:
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
    if state.changelog and config.state_topic in (*kafka.input_topics, kafka.output_topic, kafka.dead_letter_topic):
        raise ConfigError(f"state.topic {config.state_topic!r} is already used by [kafka]; name another")
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
