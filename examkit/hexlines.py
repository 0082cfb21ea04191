"""Vectorised reading of text lines that start with a hex digest.

Used by the text hash-list loaders and by bulk lookups: line ends are found
with one numpy comparison, and the fixed-width hex at the start of every line
is decoded at once through a 64 Ki-entry table (two characters -> one byte).
"""

from __future__ import annotations

import numpy as np

_HEX = b"0123456789abcdefABCDEF"


def _table() -> np.ndarray:
    values = {c: int(chr(c), 16) for c in _HEX}
    lut = np.full(65536, 256, np.uint16)
    for a, va in values.items():
        for b, vb in values.items():
            lut[a | (b << 8)] = (va << 4) | vb  # little-endian: the first character is the low byte
    return lut


_LUT = _table()


def line_bounds(buf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(starts, ends)`` of every line of a byte array (ends exclude ``\\n`` and ``\\r``)."""
    ends = np.flatnonzero(buf == 10)
    if len(ends) == 0 or ends[-1] != len(buf) - 1:
        ends = np.append(ends, len(buf))
    starts = np.empty(len(ends), np.intp)
    if len(starts):
        starts[0] = 0
        starts[1:] = ends[:-1] + 1
    ends = ends - ((ends > starts) & (buf[np.maximum(ends - 1, 0)] == 13))
    return starts, ends


def decode_hex(
    chunk: bytes | memoryview, buf: np.ndarray, starts: np.ndarray, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Decode ``width`` hex characters at each start: ``(bytes (n, width/2), valid mask)``.

    Reads past the end of the chunk are clamped (such lines come out invalid
    or are rejected by the caller's length test). ``width`` is 32, 40 or 64.
    """
    n = len(starts)
    if len(buf) < 8 or n == 0:
        return np.zeros((n, width // 2), np.uint8), np.zeros(n, bool)
    words = np.ndarray((len(buf) - 7,), dtype="<u8", buffer=chunk, strides=(1,))
    last = len(buf) - 8
    gathered = np.empty((n, width // 8), "<u8")
    for k in range(width // 8):
        gathered[:, k] = words[np.minimum(starts + 8 * k, last)]
    values = _LUT[gathered.view(np.uint16)]
    clean = values.max() < 256  # the usual case: one pass says every line is clean hex
    valid = np.ones(n, bool) if clean else np.asarray((values < 256).all(axis=1))
    return values.astype(np.uint8), valid
