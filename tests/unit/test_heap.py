"""The garbage collector paused around a restore's read, and given back as it was (no broker)."""

from __future__ import annotations

import gc

import pytest

from stream.state.heap import gc_paused


def test_the_collector_is_paused_inside_and_restored_after_even_on_an_error() -> None:
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError), gc_paused():
        raise RuntimeError("a restore that fails")
    assert gc.isenabled(), "a failed restore leaves the collector on"


def test_a_collector_the_caller_turned_off_stays_off() -> None:
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
