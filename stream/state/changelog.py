"""The state changelog: each input partition's windows and drift detectors, kept in a compacted topic.

Changelog partition p holds the state of input partition p. A checkpoint
writes, for each input partition that moved since the last one, a tombstone
per entity that expired (``state.key_ttl_s``), a record per entity whose
windows changed (key ``k<entity>``, value: ``features.snapshot`` bytes), then
a marker (key ``m``, value: the partition's drift detectors; the partition's
event-time clock in a header). Every record carries the input offset it
reflects (the next offset to read after the events it holds), the feature
spec's fingerprint and the layout's format version (``FORMAT``): a restore
refuses a record of a format it does not know rather than misread it.

Entity records carry these in the first 24 bytes of their value
(``ENTITY_HEAD``: format, offset, fingerprint; little-endian) and have no
headers: a checkpoint over a million keys writes a record per event, and
three headers per record cost more than the record's own bytes to produce.
Tombstones and markers carry them in headers (``streamscore.state.format``,
``.offset``, ``.spec``). A restore also reads the formats before: 3, whose
entity records carried the headers too; 1-2, before the windows' running
summaries were stored, by recomputing the summaries from the held values;
1, before the clock, by taking the clock from the entities' newest event
times. A reader of format 3 or before takes a record without headers for
one of another feature spec and ignores it, and refuses the markers, whose
format header says 4. Checkpoints
go out with a batch's outputs: inside its transaction in exactly-once mode;
in at-least-once mode on a producer of their own (``CheckpointDelivery``),
acknowledged before the offsets of the partitions they cover are committed.

A restore reads the partition from its start and takes, as of the committed
input offset C:

- for each entity, its last version that reflects no offset beyond C;
- the last marker at or before C: its offset M is where the input is read
  again from, state only, up to C (``stream.state.replay.Replay``);
- entities whose version is newer than M (a checkpoint cut short by a crash)
  skip their own events before that version's offset during the replay;
- with no marker at all, nothing: the input is read again from its start.

Versions beyond C only exist in at-least-once mode, written by a process
that died between a checkpoint and its commit. They are never applied; the
entity falls back to its version before, which compaction keeps while the
newer one sits in the log's active segment, and the entity is written again
at the next checkpoint. Every other restored entity keeps the record it was
restored from as its latest version until an event changes it: a restart
writes only what moved, not every key it restored.

Security: the marker's detectors are a pickle (river detectors have no other
serial form), signed with an HMAC under ``state.signing_secret``
(``signing.py``); a restore checks the signature before anything unpickles
it, and refuses an unsigned or wrongly signed record. Entity records are
plain arrays (``features.snapshot``), never unpickled. Still, grant write
access to the changelog topic to the scorer's principal only.
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, cast

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from features import FeatureStore
from features.snapshot import StateFormatError
from models.drift import DriftMonitor
from stream.exceptions import StateIntegrityError, StateRestoreError
from stream.kafka.sink import PredictionSink
from stream.kafka.source import position
from stream.state.heap import gc_paused, trim
from stream.state.signing import StateSigner
from stream.types import Headers

__all__ = ["CHANGELOG_TOPIC_CONFIG", "ENTITY_HEAD", "FORMAT", "Changelog", "PartitionState", "StateRecord", "select"]

logger = logging.getLogger(__name__)

ENTITY_PREFIX = b"k"
MARKER_KEY = b"m"
OFFSET_HEADER = "streamscore.state.offset"
SPEC_HEADER = "streamscore.state.spec"
FORMAT_HEADER = "streamscore.state.format"
CLOCK_HEADER = "streamscore.state.clock"
# The layout this code writes; it reads this one and those before (a record with headers but no format header is
# format 1). Format 4 moved an entity record's offset and spec from headers into its value (``ENTITY_HEAD``);
# 3 stores each window's running summaries (``features.snapshot``); 1 and 2 did not, and 1 had no clock.
FORMAT = 4
# An entity record's value starts with: its format, the input offset it reflects, the spec's fingerprint (8 bytes).
ENTITY_HEAD = struct.Struct("<qq8s")
# Entities a restore loads at a time (``Changelog.apply``): about 50 MB of stored
# bytes for the sensor spec at 50 events a key. Over a million keys, loading
# every partition in one piece took 12-15 s to write the windows, and 5 s in
# chunks of this size, because the windows reuse the pages the chunk before freed.
RESTORE_CHUNK = 16_384
# Compaction keeps one version per entity. Small segments let the cleaner
# reach the older ones soon, so a restore reads little more than the state.
CHANGELOG_TOPIC_CONFIG = {
    "cleanup.policy": "compact",
    "segment.bytes": str(64 * 1024 * 1024),
    "min.cleanable.dirty.ratio": "0.3",
}


@dataclass
class PartitionState:
    """What a restore found for one input partition, as of its committed offset."""

    partition: int
    committed: int | None
    entities: dict[str, bytes] = field(default_factory=dict)
    drift: bytes = b""
    resume_at: int | None = None  # the last checkpoint's offset M: read again from here to ``committed``
    skip: dict[str, int] = field(default_factory=dict)  # entity -> offset its version holds events up to
    clock: int | None = None  # the partition's event-time clock as of ``resume_at`` (None: from the entities)
    older: dict[str, int] = field(default_factory=dict)  # entity -> its format, for those stored before ``FORMAT``
    # Entities with a version beyond ``committed`` too: compaction would
    # remove the one loaded in its favour, so ``apply`` marks them to be
    # written again at the next checkpoint. The other entities' loaded
    # versions stay their latest until an event changes them.
    stale: set[str] = field(default_factory=set)
    restored: int = 0  # entities ``apply`` loaded (it then lets their stored bytes go)
    read: int = 0  # changelog records read
    ignored: int = 0  # versions beyond the committed offset, or of another feature spec


class StateRecord(NamedTuple):
    """One changelog record, as a restore sees it (a tuple: a restore makes a million of them)."""

    key: bytes
    value: bytes | None
    offset: int  # the input offset it reflects (-1: none)
    spec: str  # the feature spec's fingerprint
    clock: int | None = None  # a marker's partition clock
    layout: int = FORMAT  # the format it was written in


def select(partition: int, committed: int | None, records: list[StateRecord], fingerprint: str) -> PartitionState:
    """The state as of ``committed`` from a changelog partition's records, in log order."""
    state = PartitionState(partition, committed, read=len(records))
    if committed is None:  # nothing committed: the input starts over, and so does its state
        state.ignored = len(records)
        return state
    versions: dict[str, tuple[int, bytes, int]] = {}
    beyond: set[bytes] = set()  # entity keys with a version beyond the commit
    for record in records:
        key, value, offset = record.key, record.value, record.offset
        if record.spec != fingerprint or offset < 0 or offset > committed:
            state.ignored += 1
            if offset > committed and record.spec == fingerprint and key.startswith(ENTITY_PREFIX):
                beyond.add(key)
            continue
        if key == MARKER_KEY:
            state.resume_at, state.drift, state.clock = offset, value or b"", record.clock
        elif key.startswith(ENTITY_PREFIX):
            entity = key[len(ENTITY_PREFIX):].decode()
            if value is None:
                versions.pop(entity, None)
            else:
                versions[entity] = (offset, value, record.layout)
    if state.resume_at is None:
        # Input committed but never checkpointed (the changelog is new, or the
        # scorer died before its first checkpoint): rebuild from the start.
        state.ignored += len(versions)
        state.resume_at = 0
        return state
    for entity, (offset, value, layout) in versions.items():
        state.entities[entity] = value
        if layout != FORMAT:
            state.older[entity] = layout
        if offset > state.resume_at:
            state.skip[entity] = offset
    state.stale = {e for e in (k[len(ENTITY_PREFIX):].decode() for k in beyond) if e in state.entities}
    return state


class Changelog:
    """Writes checkpoints of a store (and drift monitor) and restores them per partition."""

    def __init__(self, *, topic: str, store: FeatureStore, monitor: DriftMonitor | None,
                 reader_settings: Mapping[str, Any], timeout_s: float, signer: StateSigner | None = None,
                 on_refused: Callable[[int, str], None] | None = None) -> None:
        """``signer`` signs and checks detector state (none: detectors are not saved); ``on_refused(partition,
        why)`` counts a refused detector record."""
        self.topic = topic
        self.store = store
        self.monitor = monitor
        self.signer = signer or StateSigner(None)
        self.on_refused = on_refused
        self.timeout_s = timeout_s
        self._reader_settings = {
            **reader_settings,
            "group.id": f"{topic}-restore",  # never joined or committed: partitions are assigned
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "fetch.wait.max.ms": 10,  # the end of a partition is known at once, not after the broker's 500 ms
            # Large fetches: a restore reads whole partitions as fast as it can (twice the
            # default sizes' speed for 3 KB records); the consumer is closed after it.
            "fetch.max.bytes": 64 * 2**20,
            "max.partition.fetch.bytes": 16 * 2**20,
            "queued.max.messages.kbytes": 256 * 2**10,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
        }

    def checkpoint(self, sink: PredictionSink, progress: Mapping[int, int],
                   expired: Mapping[int, Sequence[str]] | None = None) -> int:
        """Send each partition's tombstones, changed entities, then its marker; returns the records sent.

        ``progress`` maps input partitions to the next offset to read: the
        offset the state reflects. ``expired`` names, per partition, the
        entities the store just forgot (``FeatureStore.expire``).
        """
        sent = 0
        for partition, offset in progress.items():
            headers: Headers = [(SPEC_HEADER, self.store.fingerprint.encode()), (OFFSET_HEADER, str(offset).encode()),
                                (FORMAT_HEADER, str(FORMAT).encode())]
            gone = (expired or {}).get(partition, ())
            if gone:
                sink.send_many(self.topic, [ENTITY_PREFIX + e.encode() for e in gone], [None] * len(gone),
                               headers=headers, partition=partition)
            head = ENTITY_HEAD.pack(FORMAT, offset, bytes.fromhex(self.store.fingerprint))
            entities, values = self.store.export_dirty(partition, head)
            sink.send_many(self.topic, [ENTITY_PREFIX + e.encode() for e in entities], values, partition=partition)
            drift = (self.signer.sign(self.monitor.export(partition))
                     if self.monitor is not None and self.signer.enabled else b"")
            clock = self.store.clock(partition)
            marker_headers = headers if clock is None else [*headers, (CLOCK_HEADER, str(clock).encode())]
            sink.send(self.topic, MARKER_KEY, drift, headers=marker_headers, partition=partition)
            self.store.clean(partition)
            sent += len(gone) + len(entities) + 1
        return sent

    def read(self, committed: Mapping[int, int | None]) -> dict[int, PartitionState]:
        """Each partition's state as of its committed input offset (None: none committed).

        Reads the changelog partitions to their end (read_committed);
        StateRestoreError if that takes longer than the restore timeout.
        """
        if not committed:
            return {}
        started = time.monotonic()
        records: dict[int, list[StateRecord]] = {p: [] for p in committed}
        parsed: Parsed = {}
        consumer = Consumer(self._reader_settings)
        with gc_paused():  # a tuple per record, and none in a cycle (``stream.state.heap``)
            try:
                self._read_to_end(consumer, committed, records, parsed, started)
            except KafkaException as exc:
                raise StateRestoreError(f"reading the state changelog {self.topic}: {exc}") from exc
            finally:
                consumer.close()
            states = {p: select(p, committed[p], records[p], self.store.fingerprint) for p in committed}
        n_read = sum(s.read for s in states.values())
        logger.info("read %d state records of %s partitions %s in %.2fs: %d entities to restore",
                    n_read, self.topic, sorted(committed), time.monotonic() - started,
                    sum(len(s.entities) for s in states.values()))
        ignored = sum(s.ignored for s in states.values())
        if ignored:
            logger.warning("%d state records ignored: newer than the committed offsets (a scorer died between a "
                           "checkpoint and its commit), of another feature spec, or with nothing committed", ignored)
        return states

    def _read_to_end(self, consumer: Consumer, committed: Mapping[int, int | None],
                     records: dict[int, list[StateRecord]], parsed: Parsed, started: float) -> None:
        """Read the committed partitions to their end into ``records``."""
        todo = set(committed)  # an empty partition reports its end at once too
        # Offset 0 rather than OFFSET_BEGINNING, which costs a lookup of ~0.5 s;
        # a log starting later resets to its start (auto.offset.reset).
        consumer.assign([TopicPartition(self.topic, p, 0) for p in sorted(todo)])
        deadline = started + self.timeout_s
        while todo:
            if time.monotonic() > deadline:
                raise StateRestoreError(f"restoring {self.topic} partitions {sorted(todo)} took over "
                                        f"{self.timeout_s:.0f}s (state.restore_timeout_s)")
            for msg in consumer.consume(num_messages=10_000, timeout=0.05):
                err = msg.error()
                if err is None:
                    records[cast(int, msg.partition())].append(_record(msg, parsed))  # set on every message
                elif err.code() == KafkaError._PARTITION_EOF:
                    todo.discard(position(msg)[1])
                elif err.fatal():
                    raise StateRestoreError(f"reading {self.topic}: {err.str()}")
                else:  # a leader moving, a broker restarting: the client retries
                    logger.warning("reading %s: %s", self.topic, err.str())

    def apply_all(self, states: Mapping[int, PartitionState]) -> None:
        """``apply`` each partition's state, with room for all of their entities made first."""
        self.store.reserve(sum(len(s.entities) for s in states.values()))
        for state in states.values():
            self.apply(state)

    def apply(self, state: PartitionState) -> None:
        """Replace the partition's windows and detectors with the restored ones.

        Entities are loaded ``RESTORE_CHUNK`` at a time, and each chunk's
        stored bytes are handed back to the system before the next one: the
        windows then grow into memory the process just freed, not into pages
        it touches for the first time, and the restore never holds all the
        stored bytes and all the windows built from them at once. A record
        that does not load leaves nothing of the partition behind.
        """
        self.drop(state.partition)
        restored = 0
        try:
            while state.entities:
                restored += self._load_chunk(state)
                trim()  # the chunk's stored bytes are gone: hand them back for the next chunk's windows
        except StateFormatError as exc:
            self.drop(state.partition)
            raise StateRestoreError(f"state of {self.topic}[{state.partition}] does not load: {exc}") from exc
        self.store.mark_dirty(state.stale)
        clock = state.clock
        if clock is None and restored:  # format 1: no clock saved; the newest of its keys' events
            clock = int(self.store.newest(self.store.keys(state.partition)).max())
        self.store.set_clock(state.partition, clock)
        state.restored, state.older, state.stale = restored, {}, set()
        if self.monitor is not None and state.drift:
            try:
                payload = self.signer.verify(state.drift)
            except StateIntegrityError as exc:
                logger.error("state of %s[%d]: %s; its drift detectors start afresh", self.topic, state.partition,
                             exc)
                if self.on_refused is not None:
                    self.on_refused(state.partition, str(exc))
                return
            self.monitor.load(state.partition, payload)

    def _load_chunk(self, state: PartitionState) -> int:
        """Load up to ``RESTORE_CHUNK`` of the partition's entities, taking them out of ``state.entities``; how many."""
        by_layout: dict[int, list[tuple[str, bytes]]] = {}
        for _ in range(min(RESTORE_CHUNK, len(state.entities))):
            entity, value = state.entities.popitem()
            by_layout.setdefault(state.older.get(entity, FORMAT), []).append((entity, value))
        for layout, records in by_layout.items():
            self.store.load(records, state.partition, legacy=layout < 3, skip=ENTITY_HEAD.size if layout >= 4 else 0)
        return sum(map(len, by_layout.values()))

    def drop(self, partition: int) -> None:
        """Forget the partition's windows and detectors (it moved to another process)."""
        self.store.drop(partition)
        if self.monitor is not None:
            self.monitor.drop(partition)


Parsed = dict[tuple[tuple[str, bytes], ...], tuple[int, str, int | None, int]]


def _record(msg: Any, parsed: Parsed | None = None) -> StateRecord:
    """A changelog message as a record; StateRestoreError for a format this code does not read.

    ``parsed`` caches what each distinct set of headers says: the records of
    one checkpoint share theirs. A record without headers is an entity record
    of format 4 or later, whose value starts with ``ENTITY_HEAD``.
    """
    raw = msg.headers()
    value = msg.value()
    if not raw:
        if value is None or len(value) < ENTITY_HEAD.size:
            raise StateRestoreError(_unreadable(msg, f"no headers and a value of {len(value or b'')} bytes"))
        layout, offset, spec = ENTITY_HEAD.unpack_from(value)
        if not 4 <= layout <= FORMAT:
            raise StateRestoreError(_unreadable(msg, f"layout format {layout!r}"))
        return StateRecord(msg.key() or b"", value, offset, spec.hex(), None, layout)
    raw = tuple(raw)
    parsed = {} if parsed is None else parsed
    known = parsed.get(raw)
    if known is None:
        headers = dict(raw)
        layout = _number(headers.get(FORMAT_HEADER, b"1"))
        if layout is None or not 1 <= layout <= FORMAT:
            raise StateRestoreError(_unreadable(msg, f"layout format {headers.get(FORMAT_HEADER)!r}"))
        offset = _number(headers.get(OFFSET_HEADER, b"-1"))
        clock = _number(headers[CLOCK_HEADER]) if CLOCK_HEADER in headers else None
        known = (-1 if offset is None else offset, headers.get(SPEC_HEADER, b"").decode(errors="replace"), clock, layout)
        parsed[raw] = known
    return StateRecord(msg.key() or b"", value, *known)


def _unreadable(msg: Any, what: str) -> str:
    return (f"state record at {msg.topic()}[{msg.partition()}]@{msg.offset()} has {what}; this streamscore "
            f"reads formats 1-{FORMAT}. It was written by a newer version: run that version, or give this one a new "
            "state.topic (its state then starts empty)")


def _number(raw: bytes | None) -> int | None:
    try:
        return int(raw or b"")
    except ValueError:
        return None
