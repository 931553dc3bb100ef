"""Dead letters: a bad input record, unchanged, plus headers that say why and where it came from.

Header names follow Kafka Streams' dead-letter queue (KIP-1034) under the
``streamscore.errors.`` prefix: exception class, message, stage, source
topic, partition and offset, and the time the error happened (epoch ms).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from stream.types import Headers, InputMessage, MessageHeaders

__all__ = ["HEADER_PREFIX", "DeadLetter", "dead_letter_for"]

HEADER_PREFIX = "streamscore.errors."
# Long messages are cut so a header never dominates the record size.
MAX_MESSAGE_CHARS = 2000


@dataclass(frozen=True)
class DeadLetter:
    """A record to produce to the dead-letter topic."""

    key: bytes | None
    value: bytes | None
    headers: Headers
    reason: str  # the error class name, the metric label


def dead_letter_for(message: InputMessage, error: Exception, stage: str, now_ms: int | None = None) -> DeadLetter:
    """The dead letter of ``message``: its key, value and headers, plus the error headers."""
    text = str(error)[:MAX_MESSAGE_CHARS]
    when = int(time.time() * 1000) if now_ms is None else now_ms
    error_headers: Headers = [
        (HEADER_PREFIX + "exception", type(error).__name__.encode()),
        (HEADER_PREFIX + "message", text.encode("utf-8", "replace")),
        (HEADER_PREFIX + "stage", stage.encode()),
        (HEADER_PREFIX + "topic", (message.topic() or "").encode()),
        (HEADER_PREFIX + "partition", str(message.partition()).encode()),
        (HEADER_PREFIX + "offset", str(message.offset()).encode()),
        (HEADER_PREFIX + "timestamp", str(when).encode()),
    ]
    return DeadLetter(
        key=message.key(),
        value=message.value(),
        headers=_as_list(message.headers()) + error_headers,
        reason=type(error).__name__,
    )


def _as_list(headers: MessageHeaders | None) -> Headers:
    if headers is None:
        return []
    return list(headers.items()) if isinstance(headers, dict) else list(headers)
