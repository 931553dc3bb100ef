"""A challenger scoring the champion's feature matrices on a thread of its own, as a shadow.

The loop hands each scored batch's features (computed once) to ``submit``,
which never waits: when the challenger is still busy with earlier batches,
this one is skipped and counted. The challenger's outcomes (scores, or the
exception it raised) are picked up by ``collect`` on the loop thread at the
next batch. So a slow challenger costs the champion nothing but the CPU it
uses, and a failing one only a counter.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from models import BatchScorer
from models.scorer import Scores
from stream.avro.encoder import BatchEncoder
from stream.pipeline.columns import prediction_columns

__all__ = ["Shadow", "ShadowJob", "ShadowOutcome", "VersionStats"]

logger = logging.getLogger(__name__)

# Batches waiting for the challenger; one more is skipped rather than queued.
MAX_PENDING = 2
# A challenger that keeps failing is logged on its first failure and then every this many.
LOG_FAILURE_EVERY = 1000


@dataclass(frozen=True)
class ShadowJob:
    """One scored batch, as the challenger needs it."""

    features: np.ndarray
    keys: list[str]
    event_times: np.ndarray
    topics: list[str]
    partitions: np.ndarray
    offsets: np.ndarray
    ids: Sequence[str] | None
    champion: Scores
    window_events: np.ndarray  # the events each row's key held


@dataclass
class ShadowOutcome:
    """What the challenger made of one job: scores and, with a shadow topic, encoded records; or its error."""

    version: str
    job: ShadowJob
    scores: Scores | None = None
    error: Exception | None = None
    seconds: float = 0.0
    keys: list[bytes] = field(default_factory=list)
    values: list[bytes] = field(default_factory=list)


@dataclass
class VersionStats:
    """Per challenger version: batches scored, skipped and failed, events, model time, agreement."""

    batches: int = 0
    skipped: int = 0
    failed: int = 0
    events: int = 0
    seconds: float = 0.0
    agreed: int = 0

    @property
    def agreement(self) -> float:
        """Share of events where the challenger's label (or rounded score) equals the champion's."""
        return self.agreed / self.events if self.events else float("nan")

    @property
    def seconds_per_event(self) -> float:
        return self.seconds / self.events if self.events else float("nan")


class Shadow:
    """Scores submitted batches with the current challenger, off the loop thread."""

    def __init__(self, encoder_for: Callable[[BatchScorer], BatchEncoder | None] | None = None) -> None:
        """``encoder_for``: the shadow topic's encoder for a challenger version; None measures only."""
        self.encoder_for = encoder_for
        self.scorer: BatchScorer | None = None
        self.stats: dict[str, VersionStats] = {}
        self._encoder: BatchEncoder | None = None
        self._jobs: queue.Queue[tuple[BatchScorer, BatchEncoder | None, ShadowJob] | None] = queue.Queue(MAX_PENDING)
        self._done: deque[ShadowOutcome] = deque()
        self._thread: threading.Thread | None = None

    @property
    def version(self) -> str | None:
        return self.scorer.artifact.version if self.scorer is not None else None

    def use(self, scorer: BatchScorer | None) -> None:
        """Shadow with ``scorer`` from the next submitted batch on (None: no challenger)."""
        self.scorer = scorer
        self._encoder = self.encoder_for(scorer) if scorer is not None and self.encoder_for is not None else None
        if scorer is not None:
            self.stats.setdefault(scorer.artifact.version, VersionStats())
        if scorer is not None and self._thread is None:
            self._thread = threading.Thread(target=self._work, name="shadow", daemon=True)
            self._thread.start()

    def submit(self, job: ShadowJob) -> bool:
        """Queue a batch for the challenger; False (and counted) when it is still busy."""
        scorer = self.scorer
        if scorer is None:
            return False
        try:
            self._jobs.put_nowait((scorer, self._encoder, job))
        except queue.Full:
            self.stats[scorer.artifact.version].skipped += 1
            return False
        return True

    def collect(self) -> list[ShadowOutcome]:
        """The outcomes finished since the last call, in submission order; their counts are added to ``stats``."""
        out = []
        while self._done:
            outcome = self._done.popleft()
            stats = self.stats.setdefault(outcome.version, VersionStats())
            if outcome.scores is None:
                stats.failed += 1
                if stats.failed % LOG_FAILURE_EVERY == 1:
                    logger.warning("challenger %s failed on a batch of %d (%d failures so far): %s: %s",
                                   outcome.version, len(outcome.job.keys), stats.failed,
                                   type(outcome.error).__name__, outcome.error)
            else:
                stats.batches += 1
                stats.events += len(outcome.job.keys)
                stats.seconds += outcome.seconds
                stats.agreed += _agreed(outcome.job.champion, outcome.scores)
            out.append(outcome)
        return out

    def close(self) -> None:
        """Stop the thread after the job it is on."""
        if self._thread is not None:
            with contextlib.suppress(queue.Empty):
                while True:  # jobs not started are dropped
                    self._jobs.get_nowait()
            self._jobs.put(None)
            self._thread.join(timeout=5.0)
            self._thread = None

    def _work(self) -> None:
        while True:
            item = self._jobs.get()
            if item is None:
                return
            scorer, encoder, job = item
            outcome = ShadowOutcome(scorer.artifact.version, job)
            started = time.perf_counter()
            try:
                outcome.scores = scorer.score(job.features)
                outcome.seconds = time.perf_counter() - started
                if encoder is not None:
                    outcome.keys, outcome.values = _encode(encoder, job, outcome.scores)
            except Exception as exc:  # a challenger's failure is its own: counted, logged by collect
                outcome.scores, outcome.error = None, exc
            self._done.append(outcome)


def _agreed(champion: Scores, challenger: Scores) -> int:
    """Events where both give the same label (classifiers) or scores within 1e-6 relative (regressors)."""
    if champion.label_index is not None and challenger.label_index is not None:
        return int(np.count_nonzero(champion.label_index == challenger.label_index))
    return int(np.count_nonzero(np.isclose(champion.score, challenger.score, rtol=1e-6, atol=0.0)))


def _encode(encoder: BatchEncoder, job: ShadowJob, scores: Scores) -> tuple[list[bytes], list[bytes]]:
    key_bytes = [k.encode() for k in job.keys]
    columns = prediction_columns(key_bytes, job.event_times, job.topics, job.partitions, job.offsets, scores,
                                 int(time.time() * 1000), job.window_events)
    return key_bytes, encoder.encode(len(key_bytes), columns)
