"""``streamscore train``: a data set from the configured source, features by the service's own code, a model artifact."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
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
from stream.tools.generators import KEY_FIELDS, generate

__all__ = ["load_training_events", "train_from_config"]

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
        "training": {"source": t.source, "events": len(records), "seed": t.seed, "keys": t.keys, "rate": t.rate},
        "metrics": trained.metrics,
        "reference": {
            "features": reference_statistics(features, spec.feature_names),
            "inputs": reference_statistics(np.asarray([[r[f] for f in spec.fields] for r in records], dtype=float),
                                           spec.fields),
            "score": reference_statistics(BatchScorer.for_model(model, spec.feature_names).score(features).score[:, None],
                                          ["score"])["score"],
        },
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    artifact = ModelArtifact.save(out_dir, model, manifest)
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
