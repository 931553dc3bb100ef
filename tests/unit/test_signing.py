"""Drift-detector state in the changelog is signed: what someone else wrote is refused and never unpickled."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from features import FeatureStore
from models.drift import SignalSpec
from stream.config import ServiceConfig
from stream.exceptions import StateIntegrityError
from stream.state.changelog import Changelog, PartitionState
from stream.state.signing import SIGNED_PREFIX, StateSigner
from tests.unit.test_drift import monitor

SECRET = "a-secret-of-sixteen-or-more"


class Planted:
    """A pickle that, when loaded, creates a file: what an attacker would write to the state topic."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (str(self.path),))


def test_signed_state_round_trips_and_anything_else_is_refused() -> None:
    signer = StateSigner(SECRET)
    payload = b"detector bytes"
    record = signer.sign(payload)
    assert record.startswith(SIGNED_PREFIX) and signer.verify(record) == payload
    with pytest.raises(StateIntegrityError, match="not signed"):
        signer.verify(payload)
    with pytest.raises(StateIntegrityError, match="wrong signature"):
        StateSigner("another-secret-entirely").verify(record)
    with pytest.raises(StateIntegrityError, match="wrong signature"):
        signer.verify(record[:-1] + b"X")  # the payload changed after signing
    with pytest.raises(StateIntegrityError, match="cut short"):
        signer.verify(SIGNED_PREFIX + b"\x00" * 5)
    with pytest.raises(StateIntegrityError, match=r"no state\.signing_secret"):
        StateSigner(None).verify(record)


def changelog(config: ServiceConfig, secret: str | None, refused: list[tuple[int, str]]) -> Changelog:
    mon = monitor([SignalSpec("input", "temperature")], {"inputs": {"temperature": {"mean": 60.0, "std": 1.0}}})
    return Changelog(topic="state", store=FeatureStore(config.features), monitor=mon, reader_settings={},
                     timeout_s=1.0, signer=StateSigner(secret), on_refused=lambda p, why: refused.append((p, why)))


def feed(log: Changelog, partition: int) -> None:
    assert log.monitor is not None
    n = 600
    log.monitor.update("in", np.full(n, partition), np.arange(n), np.arange(n), np.column_stack(
        [np.random.default_rng(0).normal(60, 1, n), np.zeros(n)]), np.zeros((n, 1)), np.zeros(n))


def test_a_restore_loads_signed_detectors_and_never_unpickles_a_planted_record(
        small_config: ServiceConfig, tmp_path: Path) -> None:
    refused: list[tuple[int, str]] = []
    writer = changelog(small_config, SECRET, refused)
    feed(writer, 3)
    assert writer.monitor is not None
    signed = writer.signer.sign(writer.monitor.export(3))

    reader = changelog(small_config, SECRET, refused)
    reader.apply(PartitionState(3, committed=600, drift=signed, resume_at=600))
    assert reader.monitor is not None and reader.monitor.export(3) == writer.monitor.export(3)
    assert refused == []

    # a record someone else wrote: unsigned, or signed with another secret; its pickle would make a folder
    planted = tmp_path / "planted"
    evil = pickle.dumps(Planted(planted))
    for record in (evil, StateSigner("the-attackers-own-secret").sign(evil), SIGNED_PREFIX + evil):
        victim = changelog(small_config, SECRET, refused)
        feed(victim, 3)
        victim.apply(PartitionState(3, committed=600, drift=record, resume_at=600))
        assert not planted.exists(), "the planted pickle ran"
        assert victim.monitor is not None and victim.monitor.export(3) == pickle.dumps({}, protocol=5), \
            "refused detectors start afresh"
    assert [p for p, _ in refused] == [3, 3, 3]
    assert "not signed" in refused[0][1] and "wrong signature" in refused[1][1]


def test_without_a_secret_no_detector_state_is_written(small_config: ServiceConfig) -> None:
    class Sink:
        def __init__(self) -> None:
            self.markers: list[bytes] = []

        def send_many(self, *args, **kwargs) -> None:
            pass

        def send(self, topic: str, key: bytes, value: bytes, **kwargs) -> None:
            self.markers.append(value)

    for secret, signed in ((None, False), (SECRET, True)):
        log = changelog(small_config, secret, [])
        feed(log, 0)
        sink = Sink()
        log.checkpoint(sink, {0: 600})  # type: ignore[arg-type]
        (value,) = sink.markers
        assert value.startswith(SIGNED_PREFIX) if signed else value == b""
