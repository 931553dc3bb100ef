"""A model version loaded and checked before it scores anything: the artifact's checks, then a probe batch.

The service loads a new version this way off its loop thread and swaps it
in only when every check passes; a version that fails one is refused with
a ModelLoadError whose ``reason`` names the check.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from features import FeatureSpec
from models.artifact import ModelArtifact
from models.exceptions import ModelLoadError
from models.scorer import BatchScorer

__all__ = ["PROBE_ROWS", "load_checked", "probe"]

# Rows of the probe batch: zeros, ones, and seeded values over several scales.
PROBE_ROWS = 64


def load_checked(
    directory: Path,
    spec: FeatureSpec,
    schema_fingerprint: str | None,
    *,
    expected_sha256: str | None = None,
    running: BatchScorer | None = None,
    compiled: bool = True,
    allow_joblib: bool = True,
) -> BatchScorer:
    """A scorer for the artifact in ``directory``, after the artifact's checks and a probe batch.

    With ``running`` (the scorer in use), the new one must have been trained
    on the configured reader schema or on the running version's input schema
    (schema evolution happens between restarts, not between versions), and
    give the same kind of output: same classes, since the output encoder and
    the label join are built for them.
    """
    artifact = ModelArtifact.load(directory, spec, schema_fingerprint, expected_sha256, allow_joblib)
    if running is not None:
        trained_on = artifact.manifest.get("input_schema_fingerprint")
        known = {schema_fingerprint, running.artifact.manifest.get("input_schema_fingerprint")} - {None}
        if trained_on is not None and known and trained_on not in known:
            raise ModelLoadError(
                f"model {artifact.name} {artifact.version} was trained on input schema {trained_on}, neither the "
                f"configured reader schema's nor the running version's: retrain it on the current schema", "schema")
    scorer = BatchScorer(artifact, compiled=compiled)
    if running is not None and scorer.classes != running.classes:
        raise ModelLoadError(
            f"model {artifact.name} {artifact.version} predicts classes {list(scorer.classes)}, the running "
            f"version {running.artifact.version} {list(running.classes)}: a change of classes needs a restart",
            "classes")
    probe(scorer)
    return scorer


def probe(scorer: BatchScorer) -> None:
    """Score a synthetic batch; ModelLoadError (reason ``probe``) unless the outputs are finite and of the right shape."""
    n, f = PROBE_ROWS, scorer.n_features
    rng = np.random.default_rng(0)
    rows = np.vstack([np.zeros((1, f)), np.ones((1, f)), rng.normal(0.0, 1.0, (n - 2, f))])
    rows[n // 2:] *= 1000.0
    name = f"{scorer.artifact.name} {scorer.artifact.version}"
    try:
        scores = scorer.score(rows)
    except Exception as exc:  # whatever the model raises, the version is refused
        raise ModelLoadError(f"model {name} failed its probe batch: {type(exc).__name__}: {exc}", "probe") from exc
    if scores.score.shape != (n,) or not np.all(np.isfinite(scores.score)):
        raise ModelLoadError(f"model {name} gave scores of shape {scores.score.shape} (expected ({n},)) "
                             "or non-finite values on its probe batch", "probe")
    proba = scores.probabilities
    if proba is not None:
        if proba.shape != (n, len(scorer.classes)) or not np.all(np.isfinite(proba)):
            raise ModelLoadError(f"model {name} gave probabilities of shape {proba.shape} "
                                 f"(expected ({n}, {len(scorer.classes)})) or non-finite ones", "probe")
        if np.any(proba < -1e-9) or np.any(np.abs(proba.sum(axis=1) - 1.0) > 1e-6):
            raise ModelLoadError(f"model {name} gave probabilities outside [0, 1] or not summing to 1", "probe")
