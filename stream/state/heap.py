"""Hand freed heap memory back to the operating system after a restore.

A restore reads every stored key state into many small byte strings and
frees them once the keys are loaded. The C allocator keeps freed small
blocks for reuse rather than returning them, so without a trim the
process would stay at its peak during the restore for good: for a million
keys, gigabytes that the windows no longer need.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

__all__ = ["trim"]

logger = logging.getLogger(__name__)


def trim() -> bool:
    """Return free heap pages to the system (glibc's ``malloc_trim``); False where the C library has none."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        malloc_trim = libc.malloc_trim
    except (OSError, AttributeError, TypeError) as exc:
        logger.debug("no malloc_trim in the C library (%r): freed memory stays with the process", exc)
        return False
    return bool(malloc_trim(0))
