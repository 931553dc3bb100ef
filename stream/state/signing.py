"""Drift-detector state in the changelog, signed: nothing in the state topic is unpickled unless we wrote it.

river's detectors have no serial form but a pickle, and unpickling runs
code chosen by whoever wrote the bytes. So each detector record carries an
HMAC-SHA256 of its payload under ``state.signing_secret`` (from the
environment: ``STREAMSCORE_STATE__SIGNING_SECRET``), and a restore checks
it, in constant time, before the payload is touched. An unsigned, wrongly
signed or malformed record is refused (``StateIntegrityError``) and its
partition's detectors start afresh. Without a secret, detector state is
not written at all: windows still follow their partition, detectors restart.
"""

from __future__ import annotations

import hashlib
import hmac

from stream.exceptions import StateIntegrityError

__all__ = ["MIN_SECRET_LENGTH", "SIGNED_PREFIX", "StateSigner"]

# Format tag and version of a signed record; a record without it is unsigned.
SIGNED_PREFIX = b"ssig1:"
DIGEST_BYTES = hashlib.sha256().digest_size
MIN_SECRET_LENGTH = 16


class StateSigner:
    """Signs detector payloads with a secret, and verifies them before anything reads them."""

    def __init__(self, secret: str | None) -> None:
        self._key = secret.encode() if secret else None

    @property
    def enabled(self) -> bool:
        """Whether detector state is written (and read) at all."""
        return self._key is not None

    def sign(self, payload: bytes) -> bytes:
        """The record to write: tag, HMAC, payload."""
        assert self._key is not None, "no signing secret"
        return SIGNED_PREFIX + hmac.new(self._key, payload, hashlib.sha256).digest() + payload

    def verify(self, record: bytes) -> bytes:
        """The payload of a record this service signed; StateIntegrityError for anything else."""
        if self._key is None:
            raise StateIntegrityError("detector state found, but no state.signing_secret to check it with")
        if not record.startswith(SIGNED_PREFIX):
            raise StateIntegrityError("detector state is not signed (written by another program, or an older "
                                      "streamscore)")
        body = record[len(SIGNED_PREFIX):]
        if len(body) < DIGEST_BYTES:
            raise StateIntegrityError("detector state is cut short: no room for its signature")
        mac, payload = body[:DIGEST_BYTES], body[DIGEST_BYTES:]
        if not hmac.compare_digest(mac, hmac.new(self._key, payload, hashlib.sha256).digest()):
            raise StateIntegrityError("detector state has a wrong signature (another secret, or written by "
                                      "someone else)")
        return payload
