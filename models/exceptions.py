"""Errors raised by the model package.

ModelError
 +-- ModelLoadError      an artifact is missing, tampered with, or does not fit the config
 +-- ModelStoreError     the model store has no such model, version or alias, or cannot be read
 |    +-- UnknownAliasError            no such alias
 |    +-- ModelStoreUnavailableError   the store does not answer (retry later)
 +-- TrainingError       training data or settings cannot produce a model
"""

from __future__ import annotations

__all__ = [
    "ModelError",
    "ModelLoadError",
    "ModelStoreError",
    "ModelStoreUnavailableError",
    "TrainingError",
    "UnknownAliasError",
]


class ModelError(Exception):
    """Root of every error raised by ``models``."""


class ModelLoadError(ModelError):
    """The model artifact cannot be used: missing files, sha256 mismatch, wrong features.

    ``reason`` is a short, stable word for metrics: ``unreadable``, ``sha256``,
    ``features``, ``schema``, ``classes``, ``probe`` or ``unsafe``.
    """

    def __init__(self, message: str, reason: str = "unreadable") -> None:
        super().__init__(message)
        self.reason = reason


class ModelStoreError(ModelError):
    """The model store has no such model, version or alias, or one of its files cannot be read."""


class UnknownAliasError(ModelStoreError):
    """The model has no such alias (a challenger alias that was removed, say)."""


class ModelStoreUnavailableError(ModelStoreError):
    """The model store does not answer (a registry server that is down): try again later."""


class TrainingError(ModelError):
    """Training cannot proceed: no data, one class only, unknown estimator."""
