"""Prometheus metrics of the service, in a registry of its own (several services can share a process)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

__all__ = ["BatchHistogram", "ServiceMetrics", "metrics_markdown"]

# Batch sizes from single events to the largest batch the config allows.
BATCH_BUCKETS = (1, 5, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10_000, 50_000, 100_000)
# Model calls from a single row (~0.5 ms) to large batches.
MODEL_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# Event time to output acknowledged: a few ms on an idle loopback, seconds in a backlog.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class ServiceMetrics:
    """Every metric the service exports, named ``streamscore_*``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events_consumed = Counter("streamscore_events_consumed", "Input events consumed", ["topic"], registry=r)
        self.predictions = Counter(
            "streamscore_predictions_produced", "Predictions acknowledged by the broker", registry=r)
        self.dead_letters = Counter("streamscore_dead_letters", "Records sent to the dead-letter topic",
                                    ["reason"], registry=r)
        self.batch_size = Histogram("streamscore_batch_size", "Events per micro-batch", buckets=BATCH_BUCKETS,
                                    registry=r)
        self.model_seconds = Histogram("streamscore_model_call_seconds", "Duration of one batched model call",
                                       buckets=MODEL_BUCKETS, registry=r)
        self.latency = BatchHistogram("streamscore_end_to_end_latency_seconds",
                                      "Event time to prediction acknowledged by the broker",
                                      LATENCY_BUCKETS, registry=r)
        self.committed_lag = Gauge(
            "streamscore_consumer_committed_lag", "Messages between the group's committed offset (as of assignment "
            "and the commits since) and the high watermark: what a restart would read again", ["topic", "partition"], registry=r)
        self.lag = Gauge("streamscore_consumer_lag", "Messages between the consumer's read position and the high "
                         "watermark (read ahead of the commit, so it can be 0 while committed_lag is not)",
                         ["topic", "partition"], registry=r)
        self.drift_alarms = Counter("streamscore_drift_alarms", "Drift alarms raised", ["signal", "detector"],
                                    registry=r)
        self.model = Info("streamscore_model", "The model being served", registry=r)
        self.online_metric = Gauge("streamscore_online_metric", "Online model quality from joined labels",
                                   ["model_version", "metric"], registry=r)
        self.labels = Counter("streamscore_labels", "Labels consumed, by outcome (joined, unmatched)", ["outcome"],
                              registry=r)
        self.unlabelled = Counter("streamscore_predictions_unlabelled",
                                "Predictions that left the label cache without a label", registry=r)
        self.label_cache = Gauge("streamscore_label_cache_size", "Predictions waiting for their label", registry=r)
        self.outputs_refused = Counter(
            "streamscore_outputs_refused", "Outputs the producer or broker refused for good, by topic; a refused "
            "prediction or dead letter is replaced by a (bare) dead letter", ["topic"], registry=r)
        self.transactions_aborted = Counter(
            "streamscore_transactions_aborted", "Exactly-once batches aborted and read again", registry=r)
        self.state_records = Counter(
            "streamscore_state_records_written", "Window-state and marker records written to the changelog", registry=r)
        self.state_restored = Counter(
            "streamscore_state_entities_restored", "Entities whose windows were restored from the changelog",
            registry=r)
        self.model_swaps = Counter(
            "streamscore_model_swaps", "Model versions swapped in between two batches (promotions, rollbacks)",
            ["role"], registry=r)
        self.model_refused = Counter(
            "streamscore_model_refused", "Model versions refused by a check (sha256, features, schema, classes, "
            "probe, missing, unreadable); the running version stays", ["role", "model_version", "reason"], registry=r)
        self.swap_pause = Histogram(
            "streamscore_model_swap_pause_seconds", "Time the loop spent swapping a checked version in",
            buckets=MODEL_BUCKETS, registry=r)
        self.shadow_batches = Counter(
            "streamscore_shadow_batches", "Batches handed to the challenger, by outcome (scored, skipped because it "
            "was busy, failed)", ["model_version", "outcome"], registry=r)
        self.shadow_agreement = Gauge(
            "streamscore_shadow_agreement", "Share of events where the challenger's label equals the champion's",
            ["model_version"], registry=r)
        self.shadow_seconds = Gauge(
            "streamscore_shadow_model_seconds_per_event", "The challenger's model time per event", ["model_version"],
            registry=r)
        self.challenger_metric = Gauge(
            "streamscore_challenger_online_metric", "The challenger's online quality from joined labels",
            ["model_version", "metric"], registry=r)
        self.paired_metric = Gauge(
            "streamscore_paired_metric", "Champion and challenger on the same labelled events (the promotion rule's "
            "evidence), by role", ["role", "model_version", "metric"], registry=r)
        self.paired_labels = Gauge(
            "streamscore_paired_labels", "Labels both the champion and the challenger predicted", registry=r)
        self.state_refused = Counter(
            "streamscore_state_records_refused", "Drift-detector records of the changelog refused at restore "
            "(unsigned, wrongly signed or malformed); their detectors started afresh", registry=r)
        self.keys_expired = Counter(
            "streamscore_state_keys_expired", "Keys forgotten after state.key_ttl_s of event time without an event "
            "(tombstoned in the changelog)", registry=r)
        self.keys_live = Gauge("streamscore_state_keys", "Keys with window state in this process", registry=r)
        self.retrains = Counter(
            "streamscore_retrains", "Retrainings started by an error alarm, by outcome (registered, failed)",
            ["outcome"], registry=r)
        self.restore_seconds = Histogram(
            "streamscore_state_restore_seconds", "Reading and loading restored state, per rebalance or abort",
            buckets=LATENCY_BUCKETS, registry=r)


class BatchHistogram(Collector):
    """A Prometheus histogram fed a whole array at a time (one per event would cost a call per event)."""

    def __init__(self, name: str, documentation: str, buckets: Sequence[float],
                 registry: CollectorRegistry) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = np.asarray(buckets, dtype=np.float64)
        self._counts = np.zeros(len(buckets) + 1, dtype=np.int64)  # the last one is +Inf
        self._sum = 0.0
        self._lock = threading.Lock()
        registry.register(self)

    def observe_many(self, values: np.ndarray) -> None:
        """Add every value; ``le`` buckets count values less than or equal to their bound."""
        if len(values) == 0:
            return
        index = np.searchsorted(self.bounds, values, side="left")
        counts = np.bincount(index, minlength=len(self._counts))
        with self._lock:
            self._counts += counts
            self._sum += float(np.sum(values))

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            cumulative = np.cumsum(self._counts).tolist()
            total = self._sum
        labels = [floatToGoString(b) for b in self.bounds.tolist()] + ["+Inf"]
        family = HistogramMetricFamily(self.name, self.documentation)
        family.add_metric([], list(zip(labels, cumulative)), sum_value=total)
        yield family


def metrics_markdown() -> str:
    """The table of every exported metric for ``docs/metrics.md``: name as scraped, type, labels, meaning."""
    metrics = ServiceMetrics()
    labels = {}
    for value in vars(metrics).values():
        name = getattr(value, "_name", None) or getattr(value, "name", None)
        if isinstance(name, str):
            labels[name] = tuple(getattr(value, "_labelnames", ()))
    rows = ["| metric | type | labels | meaning |", "|---|---|---|---|"]
    for family in metrics.registry.collect():
        scraped = family.name + {"counter": "_total", "info": "_info"}.get(family.type, "")
        label_names = ", ".join(f"`{n}`" for n in labels.get(family.name, ())) or "-"
        rows.append(f"| `{scraped}` | {family.type} | {label_names} | {family.documentation} |")
    return "\n".join(rows) + "\n"
