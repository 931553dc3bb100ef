"""Errors raised by the model package.

ModelError
 +-- ModelLoadError      an artifact is missing, tampered with, or does not fit the config
 +-- ModelStoreError     the model store has no such model, version or alias, or cannot be read
 +-- TrainingError       training data or settings cannot produce a model
"""

from __future__ import annotations

__all__ = ["ModelError", "ModelLoadError", "ModelStoreError", "TrainingError"]


class ModelError(Exception):
    """Root of every error raised by ``models``."""


class ModelLoadError(ModelError):
    """The model artifact cannot be used: missing files, sha256 mismatch, wrong features."""


class ModelStoreError(ModelError):
    """The model store has no such model, version or alias, or one of its files cannot be read."""


class TrainingError(ModelError):
    """Training cannot proceed: no data, one class only, unknown estimator."""
