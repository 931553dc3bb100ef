"""Features computed offline, for training and replay, with the same code the service runs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
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
    key_ttl_ms: int = 0,
    shards: Sequence[int] | None = None,
) -> np.ndarray:
    """Feature matrix of ``records`` taken in the given (arrival) order.

    Each record is a decoded event (a mapping with the key, the event time in
    epoch milliseconds and the spec's numeric fields). ``shards`` gives each
    record's shard (its input partition), whose event-time clock ``key_ttl_ms``
    expiry counts on, as the scorer's does; without them all are one shard.
    """
    store = FeatureStore(spec, key_ttl_ms)
    fields = spec.fields
    return store.update_many(
        ((str(r[key_field]), int(r[time_field]), [r[f] for f in fields]) for r in records),
        None if shards is None else np.asarray(shards, dtype=np.int64),
    )
