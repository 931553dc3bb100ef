"""Models: artifacts and their manifests, batch scoring, training.

This package never imports ``stream`` or ``confluent_kafka``.
"""

from models.artifact import ModelArtifact
from models.exceptions import (
    ModelError,
    ModelLoadError,
    ModelStoreError,
    ModelStoreUnavailableError,
    TrainingError,
    UnknownAliasError,
)
from models.scorer import BatchScorer, Scores
from models.store import LocalModelStore, StoredVersion
from models.training import TrainedModel, train_model

__all__ = [
    "BatchScorer",
    "LocalModelStore",
    "ModelArtifact",
    "ModelError",
    "ModelLoadError",
    "ModelStoreError",
    "ModelStoreUnavailableError",
    "Scores",
    "StoredVersion",
    "TrainedModel",
    "TrainingError",
    "UnknownAliasError",
    "train_model",
]
