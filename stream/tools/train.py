"""``streamscore train``: a data set from the configured source, features by the service's own code, a model artifact."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import fastavro
import numpy as np

from features import compute_features
from models import BatchScorer, ModelArtifact, TrainingError, train_model
from models.artifact import library_versions
from models.training import reference_statistics
from stream.config import ServiceConfig
from stream.exceptions import ConfigError
from stream.tools.dataset import StreamRange, read_training_set
from stream.tools.generators import KEY_FIELDS, generate

__all__ = ["load_training_events", "train_and_save", "train_from_config", "train_from_topics"]

logger = logging.getLogger(__name__)


def load_training_events(config: ServiceConfig) -> tuple[list[dict[str, Any]], list[Any]]:
    """Records in arrival order and their labels, from ``[training].source``."""
    t = config.training
    if t.source == "simulator":
        kind = "sensor" if config.codec.key_field == KEY_FIELDS["sensor"] else "market"
        pairs: Iterable[tuple[dict[str, Any], Any]] = generate(kind, t.events, t.keys, t.seed, t.rate)
    elif t.source == "river":
        if config.codec.key_field != KEY_FIELDS["sp500"]:
            raise ConfigError("training.source = 'river' replays SP500Stocks market ticks: use the market_tick schema")
        pairs = generate("sp500", t.events, 0, t.seed)
    elif t.source == "avro":
        if not t.avro_path:
            raise ConfigError("training.source = 'avro' needs training.avro_path")
        pairs = _avro_pairs(Path(t.avro_path), t.label_field, config.codec.time_field)
    else:
        raise ConfigError(f"training.source must be 'simulator', 'river' or 'avro', got {t.source!r}")
    records, labels = [], []
    for record, label in pairs:
        records.append(record)
        labels.append(label)
    if not records:
        raise TrainingError(f"training source {t.source!r} produced no events")
    return records, labels


def train_from_config(config: ServiceConfig, out_dir: Path) -> ModelArtifact:
    """Train the configured model and write its artifact directory."""
    t = config.training
    records, labels = load_training_events(config)
    spec = config.features
    features = compute_features(spec, records, config.codec.key_field, config.codec.time_field)
    inputs = np.asarray([[r[f] for f in spec.fields] for r in records], dtype=float)
    training = {"source": t.source, "events": len(records), "seed": t.seed, "keys": t.keys, "rate": t.rate}
    return train_and_save(config, features, labels, inputs, training, out_dir)


def train_from_topics(config: ServiceConfig, span: StreamRange, out_dir: Path) -> ModelArtifact:
    """Train on a range of the input topics joined with the labels topic; the manifest records the range."""
    data = read_training_set(config, span)
    training = {
        "source": "topics", "topics": list(config.kafka.input_topics), "labels_topic": config.labels.topic,
        "range": {k: v for k, v in asdict(span).items() if v is not None}, "offsets": data.offsets,
        "events": data.events, "labelled": len(data.labels), "unlabelled": data.unlabelled,
        "undecodable": data.undecodable, "seed": config.training.seed,
        "event_time_ms": [int(data.event_times[0]), int(data.event_times[-1])] if len(data.event_times) else [],
    }
    if not data.labels:
        raise TrainingError(f"no labelled events in the range {training['range'] or 'all'} of "
                            f"{', '.join(config.kafka.input_topics)}: {data.events} events read, none with a label in "
                            f"{config.labels.topic}")
    return train_and_save(config, data.features, data.labels, data.inputs, training, out_dir)


def train_and_save(config: ServiceConfig, features: np.ndarray, labels: list[Any], inputs: np.ndarray,
                   training: dict[str, Any], out_dir: Path) -> ModelArtifact:
    """Fit the configured estimator on ``features`` (rows in time order) and write the artifact."""
    t = config.training
    spec = config.features
    trained = train_model(features, labels, t.task, t.estimator, t.params, t.test_fraction, t.seed)
    model = trained.model
    classes = [str(c) for c in getattr(model, "classes_", [])]
    manifest = {
        "name": t.name,
        "version": t.version,
        "task": t.task,
        "estimator": t.estimator,
        "params": dict(t.params),
        "classes": classes,
        "features": list(spec.feature_names),
        "feature_spec": spec.to_dict(),
        "input_schema": config.codec.reader_schema,
        "input_schema_fingerprint": config.schema_fingerprint,
        "key_field": config.codec.key_field,
        "time_field": config.codec.time_field,
        "library_versions": library_versions(),
        "training": training,
        "metrics": trained.metrics,
        "reference": {
            "features": reference_statistics(features, spec.feature_names),
            "inputs": reference_statistics(inputs, spec.fields),
            "score": reference_statistics(BatchScorer.for_model(model, spec.feature_names).score(features).score[:, None],
                                          ["score"])["score"],
        },
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    artifact = ModelArtifact.save(out_dir, model, manifest, t.format)
    logger.info("wrote model %s %s to %s: %s", t.name, t.version, out_dir, trained.metrics)
    return artifact


def _avro_pairs(path: Path, label_field: str, time_field: str) -> Iterable[tuple[dict[str, Any], Any]]:
    try:
        with path.open("rb") as f:
            for record in fastavro.reader(f):
                if not isinstance(record, dict):
                    raise ConfigError(f"{path}: holds {type(record).__name__} values, not records")
                if label_field not in record:
                    raise ConfigError(f"{path}: record has no label field {label_field!r}")
                ts = record.get(time_field)
                if isinstance(ts, dt.datetime):  # container files keep logical types
                    record[time_field] = int(ts.timestamp() * 1000)
                yield record, record[label_field]
    except OSError as exc:
        raise ConfigError(f"cannot read training.avro_path {path}: {exc}") from exc
    except ValueError as exc:
        raise TrainingError(f"{path} is not an Avro container file: {exc}") from exc
