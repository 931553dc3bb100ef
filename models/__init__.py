"""Models: artifacts and their manifests, batch scoring, training.

This package never imports ``stream`` or ``confluent_kafka``.
"""

from models.artifact import ModelArtifact
from models.exceptions import ModelError, ModelLoadError, TrainingError
from models.scorer import BatchScorer, Scores
from models.training import TrainedModel, train_model

__all__ = [
    "BatchScorer",
    "ModelArtifact",
    "ModelError",
    "ModelLoadError",
    "Scores",
    "TrainedModel",
    "TrainingError",
    "train_model",
]
