"""The configuration model: one frozen dataclass per section, with defaults and a comment on each key.

The comments above each field are the documentation: ``stream.config.reference``
turns them into ``docs/configuration.md``.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from features import FeatureSpec
from models.drift import SignalSpec
from schemas import fingerprint, schema_path
from stream.exceptions import ConfigError

__all__ = [
    "SECTIONS",
    "BatchConfig",
    "CodecConfig",
    "DriftConfig",
    "KafkaConfig",
    "LabelsConfig",
    "MetricsConfig",
    "ModelConfig",
    "ProcessingConfig",
    "ServiceConfig",
    "SimulatorConfig",
    "StateConfig",
    "TrainingConfig",
    "ValidationConfig",
    "read_schema",
    "redact",
    "redact_url",
]

# librdkafka and Schema Registry settings whose values never reach a log or repr.
_SECRET_WORDS = ("password", "secret", "token", "user.info", "key.pem", "private", "oauthbearer.config")
# The user-info part of a URL: scheme://user:password@host
_URL_CREDENTIALS = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")
# Upper bound on batch.max_size: far beyond where batching stops paying off,
# low enough that one batch's outputs fit the producer queue comfortably.
MAX_BATCH_SIZE = 100_000


def redact(settings: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of librdkafka-style settings with secret values replaced by ``***``."""
    return {k: ("***" if any(w in k.lower() for w in _SECRET_WORDS) else v) for k, v in settings.items()}


def redact_url(text: str) -> str:
    """``text`` with the credentials of every URL in it (``scheme://user:password@``) replaced by ``***``."""
    return _URL_CREDENTIALS.sub(r"\1***@", text)


@dataclass(frozen=True)
class KafkaConfig:
    """Where to read and write, and librdkafka settings passed through unchanged."""

    # The brokers, host:port[,host:port...]; KAFKA_BOOTSTRAP_SERVERS overrides the file.
    bootstrap_servers: str = "127.0.0.1:9092"
    # The consumer group: every scorer of one stream shares it, and Kafka splits the partitions among them.
    group_id: str = "streamscore"
    # The topics to score (a comma-separated string from the environment). One topic when state.changelog is on.
    input_topics: tuple[str, ...] = ()
    # One prediction per scored event goes here, keyed by the event's key field.
    output_topic: str = "predictions"
    # Records that cannot be scored go here with the reason in headers (docs/wire-format.md).
    dead_letter_topic: str = "streamscore-dead-letters"
    # Create missing output, dead-letter, drift and state topics at start-up.
    create_topics: bool = True
    # Partitions of the topics created at start-up (the state topic takes the input topic's count).
    topic_partitions: int = 8
    # At start-up, how long to wait for a broker to answer before giving up with one line (exit 1).
    connect_timeout_s: float = 10.0
    # librdkafka consumer settings, passed through (security, fetch sizes); a few are managed by streamscore.
    consumer: Mapping[str, Any] = field(default_factory=dict, repr=False)
    # librdkafka producer settings, passed through (security, linger.ms, compression.type).
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
    # confluent format only: the registry's URL (credentials go in schema_registry, not here).
    schema_registry_url: str | None = None
    # Schema Registry client settings, passed through ("basic.auth.user.info", "ssl.ca.location").
    schema_registry: Mapping[str, Any] = field(default_factory=dict, repr=False)
    # The event field that identifies an entity: its windows, and the key of its predictions.
    key_field: str = "sensor_id"
    # The event field holding event time, epoch milliseconds; time windows and latency use it.
    time_field: str = "ts"
    # The prediction schema; outputs use the same format as inputs.
    output_schema: str = "prediction"

    def __repr__(self) -> str:
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.name != "schema_registry")
        return f"CodecConfig({redact_url(shown)}, schema_registry={redact(self.schema_registry)!r})"


@dataclass(frozen=True)
class BatchConfig:
    """Micro-batching: what the consumer has ready, up to max_size events; optionally waiting to fill."""

    # Most events scored in one model call; a backlog fills batches to this size.
    max_size: int = 1000
    # 0 (natural batching): a batch is what is ready when the loop asks, so
    # light load gives small batches and a backlog full ones. Above 0, a batch
    # waits up to this long after its first event for more (docs/delivery.md).
    max_wait_ms: int = 0


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
    # (0: with every batch). After a crash or a rebalance, a restore reads
    # again at most this much input (a clean stop saves all state first).
    # On a 1,000,000-event backlog, 1 s checkpoints cost 6-15% of throughput
    # and 5 s ones 0.5% (bench/state_cost.py).
    checkpoint_interval_ms: int = 5000
    # How long a restore may wait for committed offsets and the changelog.
    restore_timeout_s: float = 120.0
    # The secret that signs drift-detector state in the changelog (HMAC-SHA256,
    # at least 16 characters); set it from the environment:
    # STREAMSCORE_STATE__SIGNING_SECRET. A record that is unsigned or wrongly
    # signed is never unpickled. Without it, detector state is not written:
    # windows follow their partition, detectors start afresh after a move.
    signing_secret: str | None = field(default=None, repr=False)
    # A key idle for longer than this in event time is forgotten: dropped from
    # memory and deleted from the changelog (a tombstone, which compaction
    # removes), so keys that come and go do not grow either without bound.
    # Idle counts against its partition's clock, the newest event time seen on
    # the partition. A key that comes back starts with empty windows (its
    # prediction's window_events says how many events they hold). 0: never.
    key_ttl_s: float = 7 * 24 * 3600.0

    @property
    def key_ttl_ms(self) -> int:
        """``key_ttl_s`` in milliseconds, the unit of event times (0: never)."""
        return round(self.key_ttl_s * 1000)


@dataclass(frozen=True)
class ValidationConfig:
    """Rules that send records to the dead-letter topic instead of the model."""

    # Records (message values) larger than this many bytes are dead-lettered
    # without decoding; 0 turns the check off.
    max_record_bytes: int = 1_048_576
    # Allowed range per numeric field, inclusive: temperature = [-40.0, 150.0].
    # Values outside it are dead-lettered. Non-finite values always are.
    ranges: Mapping[str, Any] = field(default_factory=dict)
    # Keys (the key field's value, UTF-8) longer than this are dead-lettered: a key
    # is held in memory with its windows and becomes the key of every prediction.
    max_key_bytes: int = 1024
    # Event times more than this many seconds after the scorer's clock are
    # dead-lettered: one reading from the future would hold its key's time
    # windows until then. Times outside years 1-9999 always are (a standard
    # Avro reader cannot turn them into a timestamp).
    max_event_ahead_s: float = 300.0
    # Event times more than this many seconds before the message's Kafka
    # timestamp are dead-lettered; 0 accepts any age (backlogs, replays).
    max_event_age_s: float = 0.0
    # A dead letter carries at most this many bytes of the original value (and
    # of its key); a longer one is cut, and its headers give the original size
    # and sha256. It must fit the producer's message.max.bytes with room for headers.
    dead_letter_max_bytes: int = 524_288


@dataclass(frozen=True)
class ModelConfig:
    """Where the model artifact directory is, and how many threads its calls may use."""

    # The model artifact directory: the model file and manifest.json (streamscore train --out writes one).
    path: str = "artifacts/model"
    # OpenMP/BLAS threads for model calls (threadpoolctl). One leaves the other
    # core to librdkafka and the broker; several threads on two shared cores
    # made a one-row HistGradientBoosting call ~10x slower under load.
    threads: int = 1
    # Predict HistGradientBoosting models with the compiled tree kernel
    # (models/trees.py; same outputs bit for bit); false keeps scikit-learn's.
    compiled: bool = True
    # Load joblib (pickle) model files; false accepts only skops files, so a
    # model store or folder that someone else can write cannot run code here.
    allow_joblib: bool = True
    # A model store: a folder (streamscore models register writes one), or an
    # MLflow tracking server's URI (http://host:port; pip install
    # 'streamscore[mlflow]'). With it, the scorer loads version `alias` of
    # model `name` from the store instead of `path`, and follows the alias.
    store: str | None = None
    # The model's name in the store.
    name: str | None = None
    # The alias the scorer follows (streamscore models promote moves it).
    alias: str = "champion"
    # Seconds between looks at the alias; a promotion reaches every worker
    # within this. A new version is loaded and checked off the loop thread and
    # swapped in between two batches.
    poll_interval_s: float = 10.0
    # The sha256 the model file must have: a manifest rewritten together with
    # its model is refused. Pins the scorer to one version (no alias following).
    sha256: str | None = None
    # An alias whose version scores every batch's features beside the
    # champion, as a shadow: measured on the labels, never delaying the champion.
    challenger_alias: str | None = None
    # The topic the challenger's predictions go to (the prediction schema plus
    # a role field); unset, the challenger is only measured.
    shadow_topic: str | None = None
    # Promote the challenger when it beats the champion by `promote_margin`
    # on at least this many labels of the same events (0: never; see docs/models.md).
    promote_after_labels: int = 0
    # The accuracy (or MAE) difference the challenger must win by.
    promote_margin: float = 0.02
    # On an alarm of the error signal, retrain from the input and labels
    # topics since the alarm (train --from-topics in a child process, never on
    # the loop) and register the result under `retrain_alias`.
    retrain_on_alarm: bool = False
    # Input events to wait for after the alarm before retraining on them; no
    # other alarm starts a retraining until as many more have passed.
    retrain_after_events: int = 20_000
    # The alias a retrained version gets (the scorer shadows the challenger).
    retrain_alias: str = "challenger"


@dataclass(frozen=True)
class TrainingConfig:
    """How ``streamscore train`` builds its data set and model."""

    # "simulator": events and labels from the seeded simulator;
    # "avro": an Avro container file of events with a label field;
    # "river": the market replay of river's bundled SP500Stocks.
    source: str = "simulator"
    # simulator source: how many events to train on.
    events: int = 50_000
    # simulator source: over how many keys.
    keys: int = 100
    # simulator source: the events' event-time rate per second; match the live stream's.
    rate: float = 1000.0
    # The seed of the simulator and of the estimator.
    seed: int = 42
    # avro source: the container file to read.
    avro_path: str | None = None
    # avro source: the event field that holds the label.
    label_field: str = "label"
    # "classification" (predict_proba, one probability per class) or "regression" (predict).
    task: str = "classification"
    # The model file: "skops" (loads only allowed types; HistGradientBoosting's
    # trees are bounds-checked at load) or "joblib" (a pickle: load it only
    # from a trusted source).
    format: str = "skops"
    # The scikit-learn estimator: "hist_gradient_boosting", or "logistic_regression" (Ridge for regression).
    estimator: str = "hist_gradient_boosting"
    # Keyword arguments for the estimator, passed through.
    params: Mapping[str, Any] = field(default_factory=dict)
    # The share of events held out (the latest ones) for the manifest's metrics.
    test_fraction: float = 0.2
    # The model's name, written into the manifest; predictions carry it.
    name: str = "model"
    # The model's version, written into the manifest; predictions carry it.
    version: str = "1"


SIMULATOR_KINDS = ("sensor", "market")


@dataclass(frozen=True)
class SimulatorConfig:
    """Defaults for ``streamscore simulate``; its flags override them."""

    # "sensor" (sensor_reading events) or "market" (market_tick events).
    kind: str = "sensor"
    # Distinct entities (keys) the events spread over.
    keys: int = 100
    # Events per second produced; 0 produces as fast as possible.
    rate: float = 1000.0
    # The generator's seed: the same seed gives the same events.
    seed: int = 42
    # Partitions of the topic, when simulate creates it.
    partitions: int = 8


@dataclass(frozen=True)
class LabelsConfig:
    """Delayed ground truth: an optional labels topic joined with recent predictions."""

    topic: str | None = None  # None: no labels, no error metrics
    # The event field that identifies an event; by default "<topic>/<partition>/<offset>".
    id_field: str | None = None
    cache_size: int = 100_000  # predictions held for their label, at most
    max_age_s: float = 3600.0  # and for at most this long
    # The labels' Avro schema: a bundled name or an .avsc path.
    schema: str = "label"


@dataclass(frozen=True)
class DriftConfig:
    """Drift detection: which signals, which river detectors, where alarms go."""

    # Watch the signals below with river detectors and publish an event when one fires.
    enabled: bool = True
    # Drift events go here, one per alarm.
    topic: str = "streamscore-drift"
    # The drift events' Avro schema: a bundled name or an .avsc path.
    schema: str = "drift_event"
    # [[drift.signals]] tables: source (score, input, feature, error), name, detector, params, sample_every.
    # None given: the score, every feature field and the error, each with ADWIN (docs/drift.md).
    signals: tuple[SignalSpec, ...] = ()


@dataclass(frozen=True)
class MetricsConfig:
    """The /metrics, /healthz and /readyz HTTP endpoint."""

    # Serve /metrics (Prometheus), /healthz and /readyz.
    enabled: bool = True
    # The address to listen on; 127.0.0.1 keeps it to this machine.
    host: str = "0.0.0.0"  # noqa: S104 - scraped from outside the container or host by design
    port: int = 9400  # 0: any free port (logged at start-up)


# The tables of a config file, each read into its dataclass ([features] and [drift] have builders of their own).
SECTIONS: dict[str, type] = {
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
