"""Errors raised by the model package.

ModelError
 +-- ModelLoadError      an artifact is missing, tampered with, or does not fit the config
 +-- TrainingError       training data or settings cannot produce a model
"""

from __future__ import annotations

__all__ = ["ModelError", "ModelLoadError", "TrainingError"]


class ModelError(Exception):
    """Root of every error raised by ``models``."""


class ModelLoadError(ModelError):
    """The model artifact cannot be used: missing files, sha256 mismatch, wrong features."""


class TrainingError(ModelError):
    """Training cannot proceed: no data, one class only, unknown estimator."""
