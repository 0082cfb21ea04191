"""What every worker process needs, loaded once by the pool's fork server.

Imported by the fork server before it forks workers (``examkit.executors``), so
each worker starts with the evidence libraries imported, the plugin registry
built and libmagic's database loaded, instead of doing it again itself.
"""

from __future__ import annotations

import gc

from . import worker  # noqa: F401  (the jobs workers run)
from .filetype import detect_mime
from .hashing import keep_chunk_pages, native_triple, trim_heap
from .plugins import for_workers, registry

for_workers()  # the workers' registry: no hash-set formats or reports (the parent's work)
registry()
keep_chunk_pages()  # workers inherit it: their chunks reuse heap pages (examkit.hashing)
native_triple()  # the one-pass digest's check, once for all workers
detect_mime(b"examkit")  # loads libmagic's compiled database and the text subset
detect_mime(b"\x00examkit")  # and the binary copies' subset
trim_heap()  # what loading freed (the copies' databases, built and checked) is not inherited

gc.freeze()  # what is loaded now is never collected: the workers' GC does not copy its pages
