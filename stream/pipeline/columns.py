"""Predictions as columns for the compiled encoder: where each output field comes from, and the columns."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from models import BatchScorer
from models.scorer import Scores
from stream.avro.decoder import UnsupportedSchema
from stream.avro.encoder import BatchEncoder, Choice, Const, Repeat, Values

__all__ = ["prediction_bindings", "prediction_columns", "prediction_encoder"]

logger = logging.getLogger(__name__)


def prediction_bindings(model_name: str, model_version: str, classes: tuple[str, ...],
                        role: str | None = None, window_events: bool = False) -> dict[str, Any]:
    """Where each field of the prediction schema comes from, for the compiled encoder.

    Columns: ``key``, ``event_time``, ``source_topic``, ``source_partition``,
    ``source_offset``, ``score``, ``scored_at``, ``label`` (0 for null, else
    1 + the class index) and ``probability_<j>`` per class; with
    ``window_events`` (for a schema that has the field), ``window_events``.
    With ``role``, the shadow schema's ``role`` field is that constant.
    """
    bindings: dict[str, Any] = {
        "key": Values("key"), "event_time": Values("event_time"), "source_topic": Values("source_topic"),
        "source_partition": Values("source_partition"), "source_offset": Values("source_offset"),
        "model_name": Const(model_name), "model_version": Const(model_version),
        "score": Values("score"), "label": Choice("label", (None, *classes)),
        "probabilities": Repeat(tuple({"label": Const(c), "probability": Values(f"probability_{j}")}
                                      for j, c in enumerate(classes))),
        "scored_at": Values("scored_at"),
    }
    if role is not None:
        bindings["role"] = Const(role)
    if window_events:
        bindings["window_events"] = Values("window_events")
    return bindings


def prediction_columns(key_bytes: list[bytes], times: np.ndarray, topics: Sequence[str], partitions: np.ndarray,
                       offsets: np.ndarray, scores: Scores, now_ms: int,
                       window_events: np.ndarray | None = None) -> dict[str, Any]:
    """The columns ``prediction_bindings`` names, for one batch of scores."""
    n = len(key_bytes)
    columns: dict[str, Any] = {
        "key": key_bytes, "event_time": times, "source_topic": topics, "source_partition": partitions,
        "source_offset": offsets, "score": scores.score, "scored_at": np.full(n, now_ms, dtype=np.int64),
        "label": scores.label_index + 1 if scores.label_index is not None else np.zeros(n, dtype=np.int64),
    }
    if scores.probabilities is not None:
        for j in range(scores.probabilities.shape[1]):
            columns[f"probability_{j}"] = scores.probabilities[:, j]
    if window_events is not None:
        columns["window_events"] = window_events
    return columns


def prediction_encoder(schema: dict[str, Any], prefix: bytes, scorer: BatchScorer,
                       role: str | None = None) -> BatchEncoder | None:
    """The compiled encoder of ``scorer``'s predictions, or None when ``schema`` is not the shape it fills."""
    has_window_events = any(f.get("name") == "window_events" for f in schema.get("fields", ()))
    bindings = prediction_bindings(scorer.artifact.name, scorer.artifact.version, scorer.classes, role,
                                   window_events=has_window_events)
    try:
        return BatchEncoder(schema, bindings, prefix)
    except UnsupportedSchema as exc:
        logger.info("output schema not covered by the compiled encoder (%s): encoding with fastavro", exc)
        return None
