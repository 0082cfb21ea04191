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
from .hashing import HEAD_SIZE, StreamDigest
from .isolation import heartbeat
from .models import ERROR, OK, SHORT, StreamResult, WorkUnit
from .perceptual import IMAGE_MIMES, MAX_IMAGE_BYTES, TOO_LARGE, ImageResult, hash_image
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
    """Read and hash every stream of a unit; a failing stream is recorded, not raised.

    One read per stream: the chunks feed every digest, the first bytes give the
    type, and an image's chunks are also kept (up to ``MAX_IMAGE_BYTES``) to be
    decoded once for the perceptual hashes.
    """
    media = _media(unit.container, unit.paths)
    hashers = registry().hashers
    image_hashers = registry().image_hashers if unit.perceptual else []
    results: list[StreamResult] = []
    for task in unit.tasks:
        heartbeat()
        digest = StreamDigest(hashers)
        mime: str | None = None
        typed = False
        kept: list[bytes] | None = [] if image_hashers else None
        try:
            fs = _filesystem(media, task.walker, task.fs_offset)
            for chunk in fs.read(task.inode, task.attr_type, task.attr_id, task.size):
                digest.update(chunk)
                heartbeat()
                if kept is not None:
                    kept.append(chunk)
                    if not typed and digest.bytes >= HEAD_SIZE:
                        typed, mime = True, detect_mime(digest.head)
                        if mime not in IMAGE_MIMES or task.size > MAX_IMAGE_BYTES:
                            kept = None  # not an image, or too large to decode: keep nothing
        except Exception as exc:
            results.append(StreamResult(task.file_id, ERROR, digest.bytes, error=_message(exc)))
            continue
        if not typed:
            mime = detect_mime(digest.head)
        mismatch = extension_mismatch(task.name, mime)
        image = _image(mime, task.size, kept, image_hashers)
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
                    image,
                )
            )
        else:
            results.append(StreamResult(task.file_id, OK, digest.bytes, digest.hexdigests(),
                                        mime, mismatch, None, image))  # fmt: skip
    return results


def _image(
    mime: str | None, size: int, kept: list[bytes] | None, image_hashers: list[Any]
) -> ImageResult | None:
    """Perceptual hashes of an image stream; ``None`` for anything that is not an image."""
    if not image_hashers or mime not in IMAGE_MIMES:
        return None
    if size > MAX_IMAGE_BYTES or kept is None:
        return ImageResult(TOO_LARGE, f"{size:,} bytes (limit {MAX_IMAGE_BYTES:,})")
    return hash_image(b"".join(kept), mime, image_hashers)


def list_evidence(case_path: str, evidence_id: str, container: str, paths: tuple[str, ...]) -> int:
    """List every volume, file system and entry of one evidence item into the case (in a
    worker: a crash or a hang of The Sleuth Kit on corrupt metadata costs this listing, not
    the scan). The parent holds the case's lock and writes nothing meanwhile."""
    from .case import Case
    from .plan import plan_evidence

    plugin = registry().get("containers", container)
    with Case.open(Path(case_path)) as case, open_media(plugin, [Path(p) for p in paths]) as media:
        plan_evidence(case, registry(), evidence_id, media)
        (count,) = case.conn.execute(
            "SELECT count(*) FROM files WHERE evidence_id = ?", (evidence_id,)
        ).fetchone()
    return int(count)


def hash_whole_media(container: str, paths: tuple[str, ...]) -> dict[str, str]:
    """MD5/SHA-1/SHA-256 (and any other hasher) of the whole media stream."""
    plugin = registry().get("containers", container)
    with open_media(plugin, [Path(p) for p in paths]) as media:
        return hash_media(media, registry().hashers)
