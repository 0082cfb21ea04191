"""What runs in each worker process: open the evidence itself, read and hash streams.

Workers never touch the case database; they return typed results to the one
writer. Each worker keeps the evidence it last opened, so consecutive units of
one scan do not reopen images and file systems.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from .evidence import MediaStream, hash_media, open_media
from .filetype import detect_mime, extension_mismatch
from .hashing import StreamDigest
from .models import ERROR, OK, SHORT, StreamResult, WorkUnit
from .plugins import registry
from .walk import FileSystemHandle

_local = threading.local()  # one open evidence per thread (Dask workers may run several)


def _state() -> dict[str, Any]:
    if not hasattr(_local, "state"):
        _local.state = {"key": None, "media": None, "fs": {}}
    state: dict[str, Any] = _local.state
    return state


def _media(container: str, paths: tuple[str, ...]) -> MediaStream:
    key = (container, paths)
    state = _state()
    if state["key"] != key:
        _close()
        plugin = registry().get("containers", container)
        state["media"] = open_media(plugin, [Path(p) for p in paths])
        state["key"] = key
    media: MediaStream = state["media"]
    return media


def _filesystem(media: MediaStream, walker: str, offset: int) -> FileSystemHandle:
    cache: dict[tuple[str, int], FileSystemHandle] = _state()["fs"]
    if (walker, offset) not in cache:
        plugin = registry().get("filesystems", walker)
        cache[(walker, offset)] = plugin.open(media, offset, media.size - offset)
    return cache[(walker, offset)]


def _close() -> None:
    state = _state()
    for handle in state["fs"].values():
        handle.close()
    state["fs"] = {}
    if state["media"] is not None:
        state["media"].close()
    state.update(key=None, media=None)


def _message(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return f"{type(exc).__name__}: {lines[-1] if lines else ''}".rstrip(": ")


def hash_unit(unit: WorkUnit) -> list[StreamResult]:
    """Read and hash every stream of a unit; a failing stream is recorded, not raised."""
    media = _media(unit.container, unit.paths)
    hashers = registry().hashers
    results: list[StreamResult] = []
    for task in unit.tasks:
        digest = StreamDigest(hashers)
        try:
            fs = _filesystem(media, task.walker, task.fs_offset)
            for chunk in fs.read(task.inode, task.attr_type, task.attr_id, task.size):
                digest.update(chunk)
        except Exception as exc:
            results.append(StreamResult(task.file_id, ERROR, digest.bytes, error=_message(exc)))
            continue
        mime = detect_mime(digest.head)
        mismatch = extension_mismatch(task.name, mime)
        if digest.bytes < task.size:
            results.append(
                StreamResult(
                    task.file_id,
                    SHORT,
                    digest.bytes,
                    digest.hexdigests(),
                    mime,
                    mismatch,
                    f"file system returned {digest.bytes} of {task.size} bytes",
                )
            )
        else:
            results.append(
                StreamResult(task.file_id, OK, digest.bytes, digest.hexdigests(), mime, mismatch)
            )
    return results


def hash_whole_media(container: str, paths: tuple[str, ...]) -> dict[str, str]:
    """MD5/SHA-1/SHA-256 (and any other hasher) of the whole media stream."""
    plugin = registry().get("containers", container)
    with open_media(plugin, [Path(p) for p in paths]) as media:
        return hash_media(media, registry().hashers)
