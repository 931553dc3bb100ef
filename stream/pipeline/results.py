"""What one micro-batch produced: encoded predictions, dead letters, drift events, offsets to commit."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from models.drift import DriftEvent
from stream.exceptions import OutputRejectedError
from stream.pipeline.deadletter import DeadLetter
from stream.types import InputMessage, Offsets

__all__ = ["BatchResult", "Prediction", "Predictions"]


@dataclass(frozen=True)
class Prediction:
    """An encoded prediction, ready to produce, with what latency tracking needs."""

    key: bytes
    value: bytes
    event_time_ms: int


@dataclass
class Predictions:
    """A batch's encoded predictions as parallel columns, in arrival order."""

    keys: list[bytes] = field(default_factory=list)
    values: list[bytes] = field(default_factory=list)
    event_times_ms: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    # per prediction, the index of its event in the batch's inputs (BatchResult.inputs)
    rows: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    # batch rows whose prediction could not be encoded, with why (they are dead-lettered instead)
    unencodable: dict[int, OutputRejectedError] = field(default_factory=dict)

    def source_of(self, key: bytes | None, value: bytes | None) -> int | None:
        """The batch row of the prediction with this key and value (a delivery report names only those)."""
        for i, (k, v) in enumerate(zip(self.keys, self.values)):
            if v == value and k == key:
                return int(self.rows[i])
        return None

    def __len__(self) -> int:
        return len(self.values)

    def __iter__(self) -> Iterator[Prediction]:
        for key, value, ts in zip(self.keys, self.values, self.event_times_ms.tolist()):
            yield Prediction(key, value, ts)


@dataclass
class BatchResult:
    """Everything one batch produced, and the offsets to commit once it is acknowledged."""

    predictions: Predictions = field(default_factory=Predictions)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    drift_events: list[DriftEvent] = field(default_factory=list)
    labels: int = 0  # label messages consumed
    per_topic: dict[str, int] = field(default_factory=dict)  # input events consumed, by topic
    label_dead_letters: int = 0  # of the dead letters, how many were label messages
    # (topic, partition) -> next offset to read: last offset in the batch + 1
    next_offsets: Offsets = field(default_factory=dict)
    model_seconds: float = 0.0
    # the batch's input messages (labels left out), in the order the rows count them
    inputs: Sequence[InputMessage] = ()
    # the challenger's encoded predictions of earlier batches, for the shadow topic
    shadow_keys: list[bytes] = field(default_factory=list)
    shadow_values: list[bytes] = field(default_factory=list)

    @property
    def consumed(self) -> int:
        """Input events consumed: scored or dead-lettered (labels not included)."""
        return len(self.predictions) + len(self.dead_letters) - self.label_dead_letters
