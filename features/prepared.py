"""Zeroed arrays made ready by a helper thread, so that the batch loop does not pay their page faults.

The first write to each page of fresh memory costs a page fault. On the
2-core VMs this project is benchmarked on, a page the host has not backed
yet costs ~10 us (128 MiB took 310 ms to write the first time, 5 ms the
second), so zeroing a window state's doubled rings on the loop thread
stalled batches by tens of milliseconds. Here a helper thread allocates and
zeroes them while batches go on: NumPy releases the GIL while it fills an
array, so the loop keeps running on the other core.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping

import numpy as np

__all__ = ["PreparedArrays", "Shapes", "nbytes"]

logger = logging.getLogger(__name__)

# name -> (shape, dtype) of each array
Shapes = Mapping[str, tuple[tuple[int, ...], np.dtype]]


def nbytes(shapes: Shapes) -> int:
    """Bytes that arrays of ``shapes`` take."""
    return sum(int(np.prod(shape)) * dtype.itemsize for shape, dtype in shapes.values())


class PreparedArrays:
    """Named zeroed arrays being allocated and written by a helper thread; ``take`` hands them over."""

    def __init__(self, shapes: Shapes) -> None:
        self.shapes = dict(shapes)
        self._arrays: dict[str, np.ndarray] = {}
        self._thread = threading.Thread(target=self._prepare, name="prepare-arrays", daemon=True)
        self._thread.start()

    def take(self) -> dict[str, np.ndarray] | None:
        """The arrays, zeroed, waiting for the helper if it is not done; None if it failed (it logged why)."""
        self._thread.join()
        arrays, self._arrays = self._arrays, {}
        return arrays if len(arrays) == len(self.shapes) else None

    def _prepare(self) -> None:
        arrays = {}
        try:
            for name, (shape, dtype) in self.shapes.items():
                array = np.empty(shape, dtype=dtype)
                array.fill(0)  # GIL released: the faults are taken here, off the loop thread
                arrays[name] = array
        except MemoryError as exc:  # the taker allocates on its own thread instead, and fails there if it must
            logger.warning("could not prepare %d MB of window state ahead: %r", nbytes(self.shapes) >> 20, exc)
            return
        self._arrays = arrays
