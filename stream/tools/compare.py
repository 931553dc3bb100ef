"""``streamscore models compare``: champion and challenger judged on the labels that arrived, from the topics.

Reads the prediction topic, the shadow topic and the labels topic (committed
records only), joins them by event id (``<topic>/<partition>/<offset>``) and
gives, per role and version, the metric on every labelled event it scored,
and, per challenger version, the paired comparison: both models on the
events both scored. The PNG shows the metric over event time.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.labels import as_label
from schemas import load_schema
from stream.avro.codec import AvroCodec, SchemaSource
from stream.config import ServiceConfig, read_schema
from stream.exceptions import ConfigError, RecordError
from stream.kafka.admin import admin_settings
from stream.kafka.registry import registry_for
from stream.pipeline.quality import event_id
from stream.tools.topics import StreamRange, partition_ranges, read_labels, read_partition, reader

__all__ = ["Comparison", "Outcome", "compare", "metric_of", "plot_comparison", "read_outcomes"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """One prediction, as the comparison needs it."""

    role: str
    version: str
    event_time: int
    label: str | None
    score: float


@dataclass
class Comparison:
    """Per (role, version): metric over labelled events; per challenger version: the paired comparison."""

    metric_name: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    paired: list[dict[str, Any]] = field(default_factory=list)

    def table(self) -> str:
        lines = [f"{'role':<11} {'version':<8} {'predictions':>11} {'labelled':>9} {self.metric_name:>9}"]
        for r in self.rows:
            lines.append(f"{r['role']:<11} {r['version']:<8} {r['predictions']:>11,} {r['labelled']:>9,} "
                         f"{r['metric']:>9.4f}")
        for p in self.paired:
            lines.append(f"paired on {p['labelled']:,} labelled events both scored: champion {p['champion_versions']} "
                         f"{p['champion_metric']:.4f}, challenger {p['version']} {p['challenger_metric']:.4f} "
                         f"(agreement {p['agreement']:.4f})")
        return "\n".join(lines)


def read_outcomes(config: ServiceConfig, schema_source: SchemaSource | None = None,
                  span: StreamRange | None = None) -> tuple[dict[str, Outcome], dict[str, Outcome], dict[str, Any]]:
    """(champion outcomes by event id, challenger outcomes by event id, labels by id) from the topics."""
    shadow_topic = config.model.shadow_topic
    if config.labels.topic is None:
        raise ConfigError("models compare needs labels.topic: models are compared on the labels that arrived")
    if config.labels.id_field is not None:
        raise ConfigError("models compare joins labels by <topic>/<partition>/<offset>; labels.id_field is set")
    fmt = config.codec.format
    schema_source = registry_for(config.codec, schema_source)
    consumer = reader(config.kafka.bootstrap_servers, admin_settings(config.kafka.consumer))
    try:
        truth = read_labels(consumer, config.labels.topic,
                            AvroCodec(read_schema(config.labels.schema, "labels.schema"), fmt,
                                      schema_source=schema_source))
        champion = _outcomes(consumer, config.kafka.output_topic, AvroCodec(config.output_schema, fmt,
                                                                            schema_source=schema_source), span)
        challenger = (_outcomes(consumer, shadow_topic, AvroCodec(load_schema("shadow_prediction"), fmt,
                                                                  schema_source=schema_source), span)
                      if shadow_topic is not None else {})
    finally:
        consumer.close()
    return champion, challenger, truth


def compare(champion: dict[str, Outcome], challenger: dict[str, Outcome], truth: dict[str, Any],
            task: str = "classification") -> Comparison:
    """The table ``models compare`` prints."""
    metric = "accuracy" if task == "classification" else "mae"
    out = Comparison(metric)
    for outcomes in (champion, challenger):
        by_version: dict[tuple[str, str], list[str]] = defaultdict(list)
        for event, o in outcomes.items():
            by_version[(o.role, o.version)].append(event)
        for (role, version), events in sorted(by_version.items()):
            labelled = [e for e in events if e in truth]
            out.rows.append({"role": role, "version": version, "predictions": len(events), "labelled": len(labelled),
                             "metric": metric_of([outcomes[e] for e in labelled], [truth[e] for e in labelled], task)})
    by_challenger: dict[str, list[str]] = defaultdict(list)
    for event, o in challenger.items():
        if event in truth and event in champion:
            by_challenger[o.version].append(event)
    for version, events in sorted(by_challenger.items()):
        answers = [truth[e] for e in events]
        agree = sum(champion[e].label == challenger[e].label if task == "classification"
                    else math.isclose(champion[e].score, challenger[e].score) for e in events)
        out.paired.append({
            "version": version, "labelled": len(events),
            "champion_versions": ",".join(sorted({champion[e].version for e in events})),
            "champion_metric": metric_of([champion[e] for e in events], answers, task),
            "challenger_metric": metric_of([challenger[e] for e in events], answers, task),
            "agreement": agree / len(events),
        })
    return out


def metric_over_time(outcomes: Iterable[Outcome], events: Iterable[str], truth: dict[str, Any], task: str,
                     bin_ms: int, origin_ms: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(bin start times in ms, metric per bin of ``bin_ms`` from ``origin_ms``) over the labelled ``events``."""
    bins: dict[int, list[float]] = defaultdict(list)
    for o, e in zip(outcomes, events):
        if e in truth:
            bins[(o.event_time - origin_ms) // bin_ms * bin_ms + origin_ms].append(_error(o, truth[e], task))
    starts = np.array(sorted(bins), dtype=np.int64)
    values = np.array([np.mean(bins[s]) for s in starts.tolist()])
    return starts, (1.0 - values if task == "classification" else values)


def plot_comparison(champion: dict[str, Outcome], challenger: dict[str, Outcome], truth: dict[str, Any],
                    path: Path, task: str = "classification", bins: int = 60,
                    marks: dict[str, int] | None = None) -> None:
    """The metric over event time: the champion's output by version, the challenger's shadow; ``marks`` as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    times = [o.event_time for o in champion.values()] or [0]
    t0, span = min(times), max(1, max(times) - min(times))
    bin_ms = max(1, span // bins)
    fig, ax = plt.subplots(figsize=(10, 4.5))
    for name, outcomes, style in (("champion output", champion, "-"), ("challenger (shadow)", challenger, "--")):
        versions = sorted({o.version for o in outcomes.values()})
        for version in versions:
            events = [e for e, o in outcomes.items() if o.version == version]
            starts, values = metric_over_time([outcomes[e] for e in events], events, truth, task, bin_ms, t0)
            if len(starts):
                ax.plot((starts - t0) / 1000.0, values, style, marker=".", label=f"{name}: version {version}")
    for i, (label, at_ms) in enumerate(sorted((marks or {}).items(), key=lambda kv: kv[1])):
        ax.axvline((at_ms - t0) / 1000.0, color=f"C{i + 4}", linestyle=":", linewidth=1.5)
        ax.annotate(label, ((at_ms - t0) / 1000.0, 0.03 + 0.3 * (i % 3)), xycoords=("data", "axes fraction"),
                    rotation=90,
                    fontsize=8, color=f"C{i + 4}", ha="right", va="bottom")
    ax.set_xlabel("event time (s from the first event)")
    ax.set_ylabel("accuracy on labelled events" if task == "classification" else "mean absolute error")
    ax.set_title("Online metric per model version, from the labels that arrived")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _outcomes(consumer: Any, topic: str, codec: AvroCodec, span: StreamRange | None) -> dict[str, Outcome]:
    out: dict[str, Outcome] = {}
    for tp, start, end in partition_ranges(consumer, topic, span or StreamRange()):
        for _offset, value in read_partition(consumer, tp, start, end, progress=False):
            try:
                p = codec.decode(value)
            except RecordError:
                continue
            event = event_id(p["source_topic"], p["source_partition"], p["source_offset"])
            out[event] = Outcome(p.get("role", "champion"), p["model_version"], int(p["event_time"]), p.get("label"),
                                 float(p["score"]))
    return out


def _error(o: Outcome, truth: Any, task: str) -> float:
    if task == "classification":
        return float(as_label(truth) != o.label)
    return abs(float(truth) - o.score)


def metric_of(outcomes: list[Outcome], answers: list[Any], task: str = "classification") -> float:
    """Accuracy (classifiers) or mean absolute error (regressors) of ``outcomes`` against ``answers``."""
    if not outcomes:
        return float("nan")
    mean_error = float(np.mean([_error(o, t, task) for o, t in zip(outcomes, answers)]))
    return 1.0 - mean_error if task == "classification" else mean_error
