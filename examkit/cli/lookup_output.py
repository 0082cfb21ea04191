"""The numpy path of ``examkit hashset lookup``: every set and every output form.

:func:`examkit.cli.lookup_lean.run_lookup` comes here when the compiled helper
declines (JSON output, sets with sizes or metadata, names that must pass the
display gate); the one-pass TSV below and the per-line printer give the same
bytes, and so does the helper.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from examkit.display import WITHHELD, safe_lines
from examkit.errors import UsageError
from examkit.hashdb import HashSetIndex, LineHits, lookup_lines, windows
from examkit.hashformat import DIGESTS

from .lookup_lean import summary

ALGORITHM_NAMES = [a.encode() for a in DIGESTS]


def lookup_general(folder: Path, data: bytes, show_names: bool, as_json: bool) -> int:
    """Print the hits of ``data``'s lines in the set at ``folder``; 0 when any is found."""
    index = HashSetIndex(folder)
    set_name, kind = index.manifest["name"], index.manifest["kind"]
    hits = lookup_lines(index, data)
    if hits.given == 0:
        raise UsageError("no hashes given", "give hashes as arguments or with --file")
    hide = kind == "known_bad" and not show_names
    fast = None if as_json else _tsv(index, hits, data, hide)
    if fast is not None:
        sys.stdout.buffer.write(fast)
        sys.stdout.buffer.flush()
        _summary(set_name, hits)
        return 0 if len(hits.lines) else 1
    names, sizes, metas = index.columns(hits.entries.tolist())
    lowered = data.lower()
    hexes = [lowered[a : a + w] for a, w in zip(hits.starts.tolist(), hits.widths.tolist(),
                                                strict=True)]  # fmt: skip
    algorithms = [ALGORITHM_NAMES[a] for a in hits.algorithms.tolist()]
    if hide:
        names = [WITHHELD.encode() if n else None for n in names]
    if as_json:
        found = [
            {
                "hash": h.decode(),
                "algorithm": a.decode(),
                "entry": e,
                "name": None if n is None else n.decode("utf-8", "backslashreplace"),
                "size": size,
                "meta": json.loads(meta) if meta else {},
            }
            for h, a, e, n, size, meta in zip(
                hexes, algorithms, hits.entries.tolist(), names, sizes, metas, strict=True
            )
        ]
        doc = {"set": set_name, "given": hits.given, "found": found, "invalid": hits.invalid}
        sys.stdout.write(json.dumps(doc, indent=2, ensure_ascii=True, sort_keys=True) + "\n")
        sys.stdout.flush()
    else:
        shown = safe_lines(names)
        meta_text = safe_lines(metas)
        out = sys.stdout.buffer
        out.write(
            b"".join(
                b"%s\t%s\t%s\t%s\t%s\n" % (h, a, n, b"" if size is None else b"%d" % size, m)
                for h, a, n, size, m in zip(hexes, algorithms, shown, sizes, meta_text, strict=True)
            )
        )
        out.flush()
        _summary(set_name, hits)
    return 0 if len(hits.lines) else 1


def _summary(name: str, hits: LineHits) -> None:
    found = int(np.count_nonzero(np.diff(hits.lines))) + 1 if len(hits.lines) else 0  # sorted
    summary(name, found, hits.given, hits.invalid)


_MIDDLES = b"".join(b"\t%s\t" % a for a in ALGORITHM_NAMES)
_MIDDLE_LEN = np.array([len(a) + 2 for a in ALGORITHM_NAMES], np.int64)
_MIDDLE_AT = np.cumsum(_MIDDLE_LEN) - _MIDDLE_LEN
_PRINTABLE = np.zeros(256, bool)
_PRINTABLE[0x20:0x7F] = True
_PRINTABLE[0x5C] = False  # a backslash is escaped by the gate


def _tsv(index: HashSetIndex, hits: LineHits, data: bytes, hide: bool) -> bytes | None:
    """The tab-separated output built in one vectorised pass, when the set has names only
    (no sizes, no metadata) and every name is plain printable ASCII; else ``None``.

    Every piece of a line (hex, algorithm, name, tail) is a matrix of rows plus a
    mask of the cells in use; the pieces side by side, compacted by their masks,
    are the output lines in order.
    """
    columns = index.manifest["columns"]
    if columns.get("sizes") or columns.get("meta"):
        return None
    n = len(hits.lines)
    if columns.get("names"):
        names = index.name_windows(hits.entries)
        if names is None:
            return None  # very long names: the per-line path
        if not _PRINTABLE[names[0][names[1]]].all():
            return None  # names to escape: the per-line path sends each through the gate
        if hide:  # every named entry shows the same placeholder
            named = np.asarray(names[1].any(axis=1))
            shown = np.frombuffer(WITHHELD.encode(), np.uint8)
            names = (np.broadcast_to(shown, (n, len(shown))),
                     np.broadcast_to(named[:, None], (n, len(shown))))  # fmt: skip
    else:
        names = (np.zeros((n, 0), np.uint8), np.zeros((n, 0), bool))
    text = windows(np.frombuffer(data.lower(), np.uint8), hits.starts.astype(np.int64),
                   hits.widths.astype(np.int64))  # fmt: skip
    if text is None:
        return None
    algorithms = hits.algorithms.astype(np.int64)
    middle = windows(np.frombuffer(_MIDDLES, np.uint8), _MIDDLE_AT[algorithms],
                     _MIDDLE_LEN[algorithms])  # fmt: skip
    assert middle is not None  # a few bytes wide
    tail = np.frombuffer(b"\t\t\n", np.uint8)
    pieces = [text, middle, names,
              (np.broadcast_to(tail, (n, 3)), np.ones((n, 3), bool))]  # fmt: skip
    matrix = np.hstack([p[0] for p in pieces])
    mask = np.hstack([p[1] for p in pieces])
    return bytes(matrix[mask].tobytes())
