"""Memory around a restore: freed heap handed back to the system, and no garbage collection while it reads.

A restore reads every stored key state into many small byte strings and
frees them once the keys are loaded. The C allocator keeps freed small
blocks for reuse rather than returning them, so without a trim the
process would stay at its peak during the restore for good: for a million
keys, gigabytes that the windows no longer need.

It also makes a tuple per record, none of them in a reference cycle, and
Python's cyclic collector walks all of them again at each full collection.
Over a million records that was a third of the read (3.5 of 10-11 s).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import cast

__all__ = ["gc_paused", "trim"]

logger = logging.getLogger(__name__)


def trim() -> bool:
    """Return free heap pages to the system (glibc's ``malloc_trim``); False where the C library has none."""
    malloc_trim = _malloc_trim()
    return malloc_trim is not None and bool(malloc_trim(0))


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """The C library's ``malloc_trim``, looked up once: ``find_library`` runs ``ldconfig`` (~1.3 ms a call)."""
    name = ctypes.util.find_library("c")
    try:
        return cast(Callable[[int], int], ctypes.CDLL(name).malloc_trim)
    except (OSError, AttributeError, TypeError) as exc:
        logger.debug("no malloc_trim in the C library (%r): freed memory stays with the process", exc)
        return None


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside (reference counting still frees what is let go)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
