"""examkit's command line with libmagic replaced by a constant: a measurement aid only.

``scan_vs_fiwalk.py`` runs ``untyped_scan.py scan IMAGE --workers 0 ...`` to measure the
CPU a scan spends on each stream beyond its digests and its type (listing, reading,
matching, recording). Every stream is recorded as ``application/octet-stream``, so a
case made this way is wrong about types: never use it on evidence.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the console script sets it

import examkit.archives
import examkit.filetype
import examkit.worker


def _constant(head: bytes) -> str:
    return "application/octet-stream" if head else "inode/x-empty"


for module in (examkit.filetype, examkit.worker, examkit.archives):
    module.detect_mime = _constant  # type: ignore[assignment]

if __name__ == "__main__":
    from examkit.cli.entry import main

    sys.argv[0] = "examkit"
    sys.exit(main())
