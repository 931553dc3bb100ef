"""A cache hint for compiled kernels: ask the CPU for an array element's line before it is needed.

Over a million keys each event's rows and ring sit in lines no cache holds.
Read one event at a time, their misses come one after another; hinted for a
run of events first, the memory fetches them side by side. A hint never
faults and never changes a result: a kernel's output is the same with or
without it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["AHEAD", "prefetch"]

# Events (or keys) whose lines a kernel hints at a time, a run ahead of the one it works on.
AHEAD = 32

_I32 = ir.IntType(32)
_READ, _KEEP_CLOSE, _DATA = 0, 3, 1  # llvm.prefetch: a read, keep in all cache levels, a data line


@intrinsic
def _prefetch(typingctx: Any, array: Any, index: Any) -> Any:
    """numba's typing of ``prefetch(a, i)``, and the ``llvm.prefetch`` call it compiles to (LLVM 14 and later)."""
    if not isinstance(array, types.Array) or not isinstance(index, types.Integer):
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        array_type = signature.args[0]
        data = context.make_array(array_type)(context, builder, args[0]).data
        pointer = builder.gep(data, [args[1]])
        if getattr(pointer.type, "is_opaque", False):  # LLVM 15 and later: one pointer type
            name = "llvm.prefetch.p0"
        else:
            pointer, name = builder.bitcast(pointer, ir.IntType(8).as_pointer()), "llvm.prefetch.p0i8"
        hint = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [pointer.type, _I32, _I32, _I32]), name)
        builder.call(hint, [pointer, _I32(_READ), _I32(_KEEP_CLOSE), _I32(_DATA)])
        return context.get_dummy_value()

    return types.void(array, index), codegen


# What njit code calls; typed as it is called there, not as numba's typing hook above.
prefetch: Callable[[Any, int], None] = _prefetch  # type: ignore[assignment]
"""``prefetch(a, i)`` in an njit function: hint that ``a[i]`` (a 1-d index into any array) is read soon.

``i`` indexes the array as laid out in memory (``a.ravel()`` for a C-contiguous
one); nothing checks it, and an index past the end only wastes the hint.
"""
