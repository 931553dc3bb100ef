"""Dead letters: a bad input record, unchanged, plus headers that say why and where it came from.

Header names follow Kafka Streams' dead-letter queue (KIP-1034) under the
``streamscore.errors.`` prefix: exception class, message, stage, source
topic, partition and offset, and the time the error happened (epoch ms).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from stream.types import Headers, InputMessage, MessageHeaders

__all__ = ["HEADER_PREFIX", "DeadLetter", "bare", "dead_letter_for", "record_size", "shrunk"]

HEADER_PREFIX = "streamscore.errors."
# Long messages are cut so a header never dominates the record size.
MAX_MESSAGE_CHARS = 2000
# Framing of a record and of each header in a record batch, at most (varints, attributes, lengths).
RECORD_OVERHEAD = 64
HEADER_OVERHEAD = 10


@dataclass(frozen=True)
class DeadLetter:
    """A record to produce to the dead-letter topic."""

    key: bytes | None
    value: bytes | None
    headers: Headers
    reason: str  # the error class name, the metric label


def dead_letter_for(message: InputMessage, error: Exception, stage: str, now_ms: int | None = None,
                    max_bytes: int | None = None) -> DeadLetter:
    """The dead letter of ``message``: its key, value and headers, plus the error headers.

    With ``max_bytes``, a value (or key) longer than that is cut to its first
    ``max_bytes`` bytes (``max_bytes`` 0: left out), and headers say so, with
    the original's size and sha256, so that the dead letter fits the topic.
    """
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
    key, value = message.key(), message.value()
    if max_bytes is not None:
        key = _cut("key", key, max_bytes, error_headers)
        value = _cut("value", value, max_bytes, error_headers)
    return DeadLetter(
        key=key,
        value=value,
        headers=_as_list(message.headers()) + error_headers,
        reason=type(error).__name__,
    )


def shrunk(letter: DeadLetter, limit: int) -> DeadLetter:
    """``letter`` unchanged if it fits ``limit`` bytes, else ``bare``."""
    return letter if _size(letter.key, letter.value, letter.headers) <= limit else bare(letter)


def bare(letter: DeadLetter, max_key_bytes: int = 1024) -> DeadLetter:
    """``letter`` with its value left out, the original headers dropped and the key cut: it fits any topic."""
    ours = [(k, v) for k, v in letter.headers if k.startswith(HEADER_PREFIX)]
    if len(ours) < len(letter.headers):
        ours.append((HEADER_PREFIX + "headers.omitted", b"true"))
    value = _cut("value", letter.value, 0, ours)
    key = _cut("key", letter.key, max_key_bytes, ours)
    return DeadLetter(key=key, value=value, headers=ours, reason=letter.reason)


def _cut(what: str, data: bytes | None, max_bytes: int, headers: Headers) -> bytes | None:
    """``data`` cut to ``max_bytes`` (left out at 0), with headers that say so; unchanged when it fits.

    The size and sha256 headers describe the original: a second cut keeps them.
    """
    if data is None or len(data) <= max_bytes:
        return data
    name = f"{HEADER_PREFIX}{what}."
    if not any(k == name + "size" for k, _ in headers):
        headers.append((name + "size", str(len(data)).encode()))
        headers.append((name + "sha256", hashlib.sha256(data).hexdigest().encode()))
    headers[:] = [(k, v) for k, v in headers if k != name + "truncated"]
    headers.append((name + "truncated", b"true" if max_bytes else b"omitted"))
    return data[:max_bytes] if max_bytes else None


def _size(key: bytes | None, value: bytes | None, headers: Headers) -> int:
    """Bytes a record takes on the wire, near enough: key, value, and each header's name and value plus framing."""
    return (len(key or b"") + len(value or b"") + RECORD_OVERHEAD
            + sum(len(k) + len(v or b"") + HEADER_OVERHEAD for k, v in headers))


def _as_list(headers: MessageHeaders | None) -> Headers:
    if headers is None:
        return []
    return list(headers.items()) if isinstance(headers, dict) else list(headers)


def record_size(key: bytes | None, value: bytes | None, headers: Headers | None = None) -> int:
    """What a record of this key, value and headers takes in a record batch, at most."""
    return _size(key, value, headers or [])
