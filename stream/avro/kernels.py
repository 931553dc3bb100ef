"""Compiled Avro kernels: a batch of flat records read into columns, and columns written as records.

Both kernels run a small program of operations built from the schema at
start-up (``stream.avro.decoder``, ``stream.avro.encoder``), one record after another, over a whole
micro-batch; numba compiles them once and caches them on disk. They cover
the primitive types and nullable unions. Whatever a kernel is not sure of
(a truncated body, a varint too long, text that is not strict UTF-8, an
unexpected union branch, bytes left over) it flags instead of guessing, and
the caller checks that record strictly (``stream.avro.strict``) and decodes
it with fastavro, which decide.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = [
    "E_BOOLEAN",
    "E_CHOICE",
    "E_CONST",
    "E_DOUBLE",
    "E_FLOAT",
    "E_LONG",
    "E_STRING",
    "K_FLOAT",
    "K_INT",
    "K_SKIP",
    "K_SPAN",
    "T_BOOLEAN",
    "T_BYTES",
    "T_DOUBLE",
    "T_FLOAT",
    "T_INT",
    "T_LONG",
    "T_NULL",
    "T_STRING",
    "decode_records",
    "encode_records",
]

# Avro primitive types, as the decoder's operations name them.
T_NULL, T_BOOLEAN, T_INT, T_LONG, T_FLOAT, T_DOUBLE, T_STRING, T_BYTES = range(8)
# Where a decoded value goes: nowhere, an int64 column, a float64 column, a (start, end) span of the input.
K_SKIP, K_INT, K_FLOAT, K_SPAN = range(4)
# Decoder operation layout: one row per writer field.
OP_TYPE, OP_NULL_BRANCH, OP_KIND, OP_COL, OP_FIELD, OP_READER_NULLABLE = range(6)
DECODE_OP_WIDTH = 6

# Encoder operations: constant bytes, a column's value, or one of a table of pre-encoded values.
E_CONST, E_LONG, E_DOUBLE, E_FLOAT, E_BOOLEAN, E_STRING, E_CHOICE = range(7)


@njit(cache=True)
def _read_varint(buf, pos, end):
    """(zigzag-decoded value, new position); position -1 on a truncated or over-long varint."""
    n = np.uint64(0)
    shift = 0
    while True:
        if pos >= end or shift > 63:
            return 0, -1
        b = np.uint64(buf[pos])
        pos += 1
        if shift == 63 and (b & np.uint64(0x7E)) != 0:
            return 0, -1  # more than 64 bits
        n |= (b & np.uint64(0x7F)) << np.uint64(shift)
        if (b & np.uint64(0x80)) == 0:
            break
        shift += 7
    value = np.int64(n >> np.uint64(1)) ^ -np.int64(n & np.uint64(1))
    return value, pos


@njit(cache=True)
def _utf8_ok(buf, start, end):
    """Strict UTF-8 as Python decodes it: no overlongs, no surrogates, nothing above U+10FFFF."""
    i = start
    while i < end:
        c = buf[i]
        if c < 0x80:
            i += 1
            continue
        if c < 0xC2 or c > 0xF4:
            return False
        if c < 0xE0:
            need, lo, hi = 1, 0x80, 0xBF
        elif c < 0xF0:
            need = 2
            lo = 0xA0 if c == 0xE0 else 0x80
            hi = 0x9F if c == 0xED else 0xBF
        else:
            need = 3
            lo = 0x90 if c == 0xF0 else 0x80
            hi = 0x8F if c == 0xF4 else 0xBF
        if i + need >= end:
            return False
        second = buf[i + 1]
        if second < lo or second > hi:
            return False
        for k in range(2, need + 1):
            b = buf[i + k]
            if b < 0x80 or b > 0xBF:
                return False
        i += need + 1
    return True


@njit(cache=True)
def decode_records(buf, starts, ends, rows, ops, ints, floats, spans, nulls, flagged):
    """Decode the record of each row in ``rows`` (body ``buf[starts[r]:ends[r]]``) into the column arrays.

    ``flagged[r]`` is set for a record the kernel leaves to fastavro; its
    columns are then undefined.
    """
    n_ops = ops.shape[0]
    for r in rows:
        pos = starts[r]
        end = ends[r]
        bad = False
        for k in range(n_ops):
            t = ops[k, OP_TYPE]
            kind = ops[k, OP_KIND]
            col = ops[k, OP_COL]
            field = ops[k, OP_FIELD]
            null_branch = ops[k, OP_NULL_BRANCH]
            if null_branch >= 0:
                at = pos
                branch, pos = _read_varint(buf, pos, end)
                if pos < 0 or pos - at > 5 or (branch != 0 and branch != 1):  # the branch is an int
                    bad = True
                    break
                if branch == null_branch:
                    if kind != K_SKIP:
                        if ops[k, OP_READER_NULLABLE] == 0:
                            bad = True  # fastavro reports the resolution error
                            break
                        nulls[r, field] = True
                    continue
            if kind != K_SKIP:
                nulls[r, field] = False
            if t == T_NULL:
                if kind != K_SKIP:
                    nulls[r, field] = True
            elif t == T_BOOLEAN:
                if pos >= end or buf[pos] > 1:
                    bad = True
                    break
                if kind == K_INT:
                    ints[r, col] = buf[pos]
                pos += 1
            elif t == T_INT or t == T_LONG:  # noqa: SIM109 - kept as plain compares in the compiled loop
                at = pos
                value, pos = _read_varint(buf, pos, end)
                if pos < 0 or (t == T_INT and (pos - at > 5 or value < -2147483648 or value > 2147483647)):
                    bad = True  # an int takes at most 5 bytes and 32 bits (strict.py says which)
                    break
                if kind == K_INT:
                    ints[r, col] = value
                elif kind == K_FLOAT:
                    floats[r, col] = np.float64(value)
            elif t == T_FLOAT:
                if pos + 4 > end:
                    bad = True
                    break
                if kind == K_FLOAT:
                    floats[r, col] = np.float64(buf[pos:pos + 4].view(np.float32)[0])
                pos += 4
            elif t == T_DOUBLE:
                if pos + 8 > end:
                    bad = True
                    break
                if kind == K_FLOAT:
                    floats[r, col] = buf[pos:pos + 8].view(np.float64)[0]
                pos += 8
            else:  # string or bytes
                length, pos = _read_varint(buf, pos, end)
                if pos < 0 or length < 0 or pos + length > end:
                    bad = True
                    break
                if kind == K_SPAN:
                    if t == T_STRING and not _utf8_ok(buf, pos, pos + length):
                        bad = True
                        break
                    spans[r, col, 0] = pos
                    spans[r, col, 1] = pos + length
                pos += length
        flagged[r] = bad or pos != end


@njit(cache=True)
def _write_varint(out, pos, value):
    n = (np.uint64(value) << np.uint64(1)) ^ np.uint64(value >> 63)
    while n >= np.uint64(0x80):
        out[pos] = np.uint8((n & np.uint64(0x7F)) | np.uint64(0x80))
        n >>= np.uint64(7)
        pos += 1
    out[pos] = np.uint8(n)
    return pos + 1


@njit(cache=True)
def encode_records(ops, consts, const_offsets, ints, float_bits, float32_bits, text, text_spans, out, ends):
    """Write one record per row of the columns into ``out``; record i ends at ``ends[i]``.

    ``float_bits``/``float32_bits`` are the float columns' IEEE bits, so
    every NaN keeps its payload. A choice column holds an index into the
    constant table relative to the operation's first entry. Returns the
    number of bytes written, or -1 when a choice index is out of range.
    """
    pos = 0
    n_consts = const_offsets.shape[0] - 1
    for r in range(ends.shape[0]):
        for k in range(ops.shape[0]):
            op = ops[k, 0]
            col = ops[k, 1]
            if op == E_CONST or op == E_CHOICE:  # noqa: SIM109 - kept as plain compares in the compiled loop
                c = ops[k, 2] + (ints[r, col] if op == E_CHOICE else 0)
                if c < ops[k, 2] or c >= ops[k, 2] + ops[k, 3] or c >= n_consts:
                    return -1
                for i in range(const_offsets[c], const_offsets[c + 1]):
                    out[pos] = consts[i]
                    pos += 1
            elif op == E_LONG:
                pos = _write_varint(out, pos, ints[r, col])
            elif op == E_BOOLEAN:
                out[pos] = 1 if ints[r, col] != 0 else 0
                pos += 1
            elif op == E_DOUBLE:
                bits = float_bits[r, col]
                for i in range(8):
                    out[pos] = np.uint8((bits >> np.uint64(8 * i)) & np.uint64(0xFF))
                    pos += 1
            elif op == E_FLOAT:
                bits32 = float32_bits[r, col]
                for i in range(4):
                    out[pos] = np.uint8((bits32 >> np.uint32(8 * i)) & np.uint32(0xFF))
                    pos += 1
            else:  # E_STRING
                s = text_spans[r, col, 0]
                e = text_spans[r, col, 1]
                pos = _write_varint(out, pos, e - s)
                for i in range(s, e):
                    out[pos] = text[i]
                    pos += 1
        ends[r] = pos
    return pos
