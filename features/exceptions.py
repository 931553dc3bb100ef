"""Errors raised by the feature package.

FeatureError
 +-- FeatureSpecError      the declared feature spec is invalid
 +-- FeatureValueError     one event cannot be turned into features
"""

from __future__ import annotations

__all__ = ["FeatureError", "FeatureSpecError", "FeatureValueError"]


class FeatureError(Exception):
    """Root of every error raised by ``features``."""


class FeatureSpecError(FeatureError):
    """The feature spec (from config or a manifest) is invalid."""


class FeatureValueError(FeatureError):
    """An event's field is missing, not numeric, or not finite."""
