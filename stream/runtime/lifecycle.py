"""The model lifecycle inside the loop: swap checked versions in between batches, measure the challenger.

``VersionWatcher`` loads and checks versions on its own thread; this class
is the loop thread's side: it swaps what is ready into the processor, keeps
the per-version metrics, and applies the promotion rule when one is set.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Sequence

from models import BatchScorer
from models.drift import DriftEvent
from stream.config import ModelConfig
from stream.pipeline.processor import BatchProcessor
from stream.pipeline.shadow import Shadow
from stream.runtime.metrics import ServiceMetrics
from stream.runtime.retraining import Retrainer
from stream.runtime.stats import RunStats
from stream.runtime.versions import CHALLENGER, CHAMPION, VersionWatcher

__all__ = ["ModelLifecycle"]

logger = logging.getLogger(__name__)


class ModelLifecycle:
    """Swaps, shadow metrics and the promotion rule, for the loop thread."""

    def __init__(self, *, config: ModelConfig, processor: BatchProcessor, metrics: ServiceMetrics,
                 watcher: VersionWatcher | None, shadow: Shadow | None, retrainer: Retrainer | None = None) -> None:
        self.config = config
        self.processor = processor
        self.metrics = metrics
        self.watcher = watcher
        self.shadow = shadow
        self.retrainer = retrainer
        self.swaps = 0
        self.last_swap_ms = 0.0
        self._counted: dict[tuple[str, str], int] = {}
        self._promotion_asked_for: str | None = None

    def start(self, resources: contextlib.ExitStack) -> None:
        """Start following the aliases; stopped (and the shadow's thread too) when ``resources`` closes."""
        if self.watcher is not None:
            self.watcher.start()
            resources.callback(self.watcher.close)
        if self.shadow is not None:
            resources.callback(self.shadow.close)
        if self.retrainer is not None:
            resources.callback(self.retrainer.close)

    @property
    def store_reachable(self) -> bool:
        return self.watcher is None or self.watcher.store_ok

    def swap(self) -> None:
        """Between two batches: use every version the watcher has ready."""
        if self.watcher is None:
            return
        ready = self.watcher.take()
        if not ready:
            return
        started = time.perf_counter()
        for version in ready:
            if version.role == CHAMPION and version.scorer is not None:
                old = self.processor.model_version
                self.processor.use(version.scorer)
                self._model_info(version.scorer)
                logger.info("now scoring with %s version %s (was %s)", version.scorer.artifact.name,
                            version.scorer.artifact.version, old)
            elif version.role == CHALLENGER and self.shadow is not None:
                self.shadow.use(version.scorer)
                if self.processor.quality is not None and self.processor.quality.challenger_joiner is not None:
                    self.processor.quality.challenger_joiner.paired.reset()
                logger.info("challenger: %s", version.scorer.artifact.version if version.scorer else "none")
            self.metrics.model_swaps.labels(version.role).inc()
            self.swaps += 1
        pause = time.perf_counter() - started
        self.last_swap_ms = pause * 1000.0
        self.metrics.swap_pause.observe(pause)
        logger.info("swap took %.3f ms between two batches", self.last_swap_ms)

    def refused(self, role: str, version: str, reason: str) -> None:
        """Count a refused version (called from the watcher's thread; Prometheus counters are thread-safe)."""
        self.metrics.model_refused.labels(role, version, reason).inc()

    def after_batch(self, drift_events: Sequence[DriftEvent] = ()) -> None:
        """Per-version metrics of the challenger, the promotion rule, and retraining on an error alarm."""
        if self.retrainer is not None:
            self.retrainer.on_alarms(drift_events)
        if self.shadow is None:
            return
        m = self.metrics
        for version, stats in self.shadow.stats.items():
            for outcome, total in (("scored", stats.batches), ("skipped", stats.skipped), ("failed", stats.failed)):
                seen = self._counted.get((version, outcome), 0)
                if total > seen:
                    m.shadow_batches.labels(version, outcome).inc(total - seen)
                    self._counted[(version, outcome)] = total
            if stats.events:
                m.shadow_agreement.labels(version).set(stats.agreement)
                m.shadow_seconds.labels(version).set(stats.seconds_per_event)
        quality = self.processor.quality
        joiner = quality.challenger_joiner if quality is not None else None
        if joiner is None:
            return
        for (version, metric), value in joiner.metric_values().items():
            m.challenger_metric.labels(version, metric).set(value)
        paired = joiner.paired
        m.paired_labels.set(paired.n)
        challenger = self.shadow.version
        if paired.n and challenger is not None:
            champion_value, challenger_value = paired.metrics()
            if not math.isnan(champion_value):
                m.paired_metric.labels("champion", self.processor.model_version, paired.metric_name).set(champion_value)
                m.paired_metric.labels("challenger", challenger, paired.metric_name).set(challenger_value)
        if (self.watcher is not None and challenger is not None and challenger != self._promotion_asked_for
                and paired.challenger_wins(self.config.promote_after_labels, self.config.promote_margin)):
            champion_value, challenger_value = paired.metrics()
            logger.info("challenger %s beats champion %s on %d labels (%s %.4f against %.4f): promoting it",
                        challenger, self.processor.model_version, paired.n, paired.metric_name,
                        challenger_value, champion_value)
            self._promotion_asked_for = challenger
            self.watcher.request_promotion()

    def record(self, stats: RunStats) -> None:
        """The run's swaps and challenger counts, for the end-of-run summary."""
        stats.model_swaps = self.swaps
        if self.shadow is not None:
            stats.shadow = {version: {"batches": s.batches, "skipped": s.skipped, "failed": s.failed,
                                      "events": s.events, "agreement": round(s.agreement, 4) if s.events else None}
                            for version, s in self.shadow.stats.items()}

    def _model_info(self, scorer: BatchScorer) -> None:
        a = scorer.artifact
        self.metrics.model.info({"name": a.name, "version": a.version, "sha256": str(a.manifest.get("sha256"))})
