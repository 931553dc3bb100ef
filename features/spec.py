"""The declared feature spec: which fields, which windows, which aggregates."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from features.exceptions import FeatureSpecError

__all__ = ["AGGREGATES", "FeatureSpec", "WindowSpec"]

# Every aggregate a window can report. "delta" is last minus first value in
# the window; "std" is the population standard deviation (ddof=0); "ewma" is
# the exponentially weighted mean over the window's contents, newest weight 1,
# each older event weighted (1 - alpha) times the next newer one.
AGGREGATES: tuple[str, ...] = ("mean", "std", "min", "max", "sum", "count", "last", "delta", "ewma")

# Default smoothing of "ewma": an event's weight halves after ~2 newer events.
DEFAULT_EWMA_ALPHA = 0.3


@dataclass(frozen=True)
class WindowSpec:
    """One rolling window: the last ``size`` events, or the last ``seconds`` of event time."""

    kind: str
    size: int | None = None
    seconds: float | None = None
    aggregates: tuple[str, ...] = ("mean", "std", "min", "max", "last")
    ewma_alpha: float = DEFAULT_EWMA_ALPHA

    def __post_init__(self) -> None:
        if self.kind == "count":
            if not isinstance(self.size, int) or isinstance(self.size, bool) or self.size < 1:
                raise FeatureSpecError(f"count window needs an integer size >= 1, got {self.size!r}")
            if self.seconds is not None:
                raise FeatureSpecError("count window takes 'size', not 'seconds'")
        elif self.kind == "time":
            if not isinstance(self.seconds, (int, float)) or isinstance(self.seconds, bool) or self.seconds <= 0:
                raise FeatureSpecError(f"time window needs seconds > 0, got {self.seconds!r}")
            if self.size is not None:
                raise FeatureSpecError("time window takes 'seconds', not 'size'")
        else:
            raise FeatureSpecError(f"window kind must be 'count' or 'time', got {self.kind!r}")
        unknown = [a for a in self.aggregates if a not in AGGREGATES]
        if unknown or not self.aggregates:
            raise FeatureSpecError(
                f"unknown or missing aggregates {unknown or '[]'}; choose from {', '.join(AGGREGATES)}"
            )
        if len(set(self.aggregates)) != len(self.aggregates):
            raise FeatureSpecError(f"aggregates listed twice in {list(self.aggregates)}")
        if not 0.0 < self.ewma_alpha <= 1.0:
            raise FeatureSpecError(f"ewma_alpha must be in (0, 1], got {self.ewma_alpha}")

    @property
    def name(self) -> str:
        """Short name used in feature names: ``n16`` or ``t60s``."""
        if self.kind == "count":
            return f"n{self.size}"
        seconds = self.seconds if self.seconds is not None else 0
        return f"t{seconds:g}s"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "aggregates": list(self.aggregates), "ewma_alpha": self.ewma_alpha}
        if self.kind == "count":
            out["size"] = self.size
        else:
            out["seconds"] = self.seconds
        return out


@dataclass(frozen=True)
class FeatureSpec:
    """Every numeric field gets every window; features are named ``field__window__aggregate``."""

    fields: tuple[str, ...]
    windows: tuple[WindowSpec, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not self.fields:
            raise FeatureSpecError("features.fields is empty: name at least one numeric field")
        if len(set(self.fields)) != len(self.fields):
            raise FeatureSpecError(f"features.fields lists a field twice: {list(self.fields)}")
        if not self.windows:
            raise FeatureSpecError("features.windows is empty: declare at least one window")
        names = [w.name for w in self.windows]
        if len(set(names)) != len(names):
            raise FeatureSpecError(f"two windows share a name: {names}")

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Feature names in the order the feature vector holds them."""
        return tuple(
            f"{f}__{w.name}__{agg}" for f in self.fields for w in self.windows for agg in w.aggregates
        )

    @property
    def n_features(self) -> int:
        return sum(len(w.aggregates) for w in self.windows) * len(self.fields)

    def to_dict(self) -> dict[str, Any]:
        return {"fields": list(self.fields), "windows": [w.to_dict() for w in self.windows]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSpec:
        """Build from the ``[features]`` config table or a manifest's ``feature_spec``."""
        try:
            default_aggs = tuple(data.get("aggregates", WindowSpec.aggregates))
            default_alpha = float(data.get("ewma_alpha", DEFAULT_EWMA_ALPHA))
            windows = tuple(
                WindowSpec(
                    kind=w.get("kind", ""),
                    size=w.get("size"),
                    seconds=w.get("seconds"),
                    aggregates=tuple(w.get("aggregates", default_aggs)),
                    ewma_alpha=float(w.get("ewma_alpha", default_alpha)),
                )
                for w in data.get("windows", ())
            )
            return cls(fields=tuple(data.get("fields", ())), windows=windows)
        except (TypeError, AttributeError, ValueError) as exc:
            raise FeatureSpecError(f"malformed feature spec: {exc}") from exc
