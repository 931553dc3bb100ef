"""Rolling per-key features: the spec, the windows, the store and offline computation.

This package never imports ``stream`` or ``confluent_kafka``: the same code
computes features live, offline for training, and in tests without a broker.
"""

from features.exceptions import FeatureError, FeatureSpecError, FeatureValueError
from features.offline import compute_features
from features.spec import AGGREGATES, FeatureSpec, WindowSpec
from features.store import FeatureStore

__all__ = [
    "AGGREGATES",
    "FeatureError",
    "FeatureSpec",
    "FeatureSpecError",
    "FeatureStore",
    "FeatureValueError",
    "WindowSpec",
    "compute_features",
]
