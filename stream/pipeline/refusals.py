"""Outputs the producer or the broker refused for good, turned into dead letters so the stream goes on.

A refused prediction becomes a dead letter of the event it scored; a refused
dead letter goes again bare (no value, no original headers, the key cut),
which any topic takes. Both name the input they came from, so that a batch
read again (exactly-once: the transaction aborted) dead-letters those inputs
at once instead of being refused again. A refused drift event has nowhere
else to go: it is logged and counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stream.exceptions import OutputRefusedError
from stream.pipeline.deadletter import HEADER_PREFIX, DeadLetter, bare, dead_letter_for
from stream.pipeline.results import BatchResult
from stream.types import Rejected

__all__ = ["Position", "Rerouted", "reroute"]

# (topic, partition, offset) of an input message
Position = tuple[str, int, int]


@dataclass
class Rerouted:
    """What to do about a batch's refused outputs."""

    dead_letters: list[DeadLetter] = field(default_factory=list)  # to send instead
    inputs: dict[Position, str] = field(default_factory=dict)  # inputs whose outputs were refused, with why
    dropped: list[Rejected] = field(default_factory=list)  # outputs with nowhere else to go


def reroute(rejected: list[Rejected], result: BatchResult, *, output_topic: str, dead_letter_topic: str) -> Rerouted:
    """The dead letters that replace ``rejected`` outputs of ``result``, and the inputs they came from."""
    out = Rerouted()
    for r in rejected:
        if r.topic == output_topic:
            row = result.predictions.source_of(r.key, r.value)
            if row is None:
                out.dropped.append(r)
                continue
            message = result.inputs[row]
            error = OutputRefusedError(f"its prediction was {r.reason}")
            out.dead_letters.append(bare(dead_letter_for(message, error, "produce", max_bytes=0)))
            out.inputs[(message.topic() or "", message.partition() or 0, message.offset() or 0)] = str(error)
        elif r.topic == dead_letter_topic:
            out.dead_letters.append(bare(DeadLetter(r.key, r.value, r.headers, _reason(r))))
            position = _source(r)
            if position is not None:
                out.inputs[position] = f"its dead letter was {r.reason}"
        else:
            out.dropped.append(r)
    return out


def _reason(r: Rejected) -> str:
    """The error class a dead letter's headers name."""
    for k, v in r.headers:
        if k == HEADER_PREFIX + "exception" and isinstance(v, bytes):
            return v.decode(errors="replace")
    return OutputRefusedError.__name__


def _source(r: Rejected) -> Position | None:
    """The input a dead letter names in its headers."""
    found = {k[len(HEADER_PREFIX):]: v for k, v in r.headers if k.startswith(HEADER_PREFIX) and isinstance(v, bytes)}
    try:
        return found["topic"].decode(), int(found["partition"]), int(found["offset"])
    except (KeyError, ValueError):
        return None
