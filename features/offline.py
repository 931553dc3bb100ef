"""Features computed offline, for training and replay, with the same code the service runs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from features.spec import FeatureSpec
from features.store import FeatureStore

__all__ = ["compute_features"]


def compute_features(
    spec: FeatureSpec,
    records: Iterable[Mapping[str, Any]],
    key_field: str,
    time_field: str,
) -> np.ndarray:
    """Feature matrix of ``records`` taken in the given (arrival) order.

    Each record is a decoded event (a mapping with the key, the event time in
    epoch milliseconds and the spec's numeric fields).
    """
    store = FeatureStore(spec)
    fields = spec.fields
    return store.update_many(
        (str(r[key_field]), int(r[time_field]), [r[f] for f in fields]) for r in records
    )
