"""A unit's small streams are typed together, after they were read (examkit.worker)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from examkit import worker
from examkit.filetype import detect_mime
from examkit.hashing import HEAD_SIZE
from examkit.models import StreamTask, WorkUnit
from examkit.scan import ScanOptions
from tests.conftest import comparable_rows, do_scan, file_rows
from tests.oracle import digests, icat


def test_results_equal_one_by_one_typing_and_each_type_is_its_own_streams(
    fixture_images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = fixture_images / "archives.raw"  # small files of many types; archives expanded
    batched = tmp_path / "batched.sqlite"
    do_scan(batched, [image], options=ScanOptions(workers=0))
    monkeypatch.setattr(worker, "TYPE_BATCH_BYTES", 0)  # each stream typed as it ends
    alone = tmp_path / "alone.sqlite"
    do_scan(alone, [image], options=ScanOptions(workers=0))
    assert comparable_rows(batched) == comparable_rows(alone)

    rows = [r for r in file_rows(batched) if r["status"] == "ok" and r["parent_file_id"] is None]
    assert len(rows) >= 8
    assert len({r["mime"] for r in rows}) >= 4
    for row in rows:  # the oracle: each stream's bytes as icat reads them, typed alone
        data = icat(image, str(row["inode"]))
        assert (row["md5"], row["sha1"], row["sha256"]) == digests(data), row["path"]
        assert row["mime"] == detect_mime(data[:HEAD_SIZE]), row["path"]
    assert any(r["archive_members"] for r in rows)  # expanded from the chunks held meanwhile


class _FakeFs:
    """A file system whose streams are given chunks; logs each chunk as it is read."""

    def __init__(self, streams: dict[int, list[bytes]], log: list[tuple[str, Any]]) -> None:
        self.streams, self.log = streams, log

    def read(self, inode: int, attr_type: Any, attr_id: Any, size: int) -> Iterator[bytes]:
        for n, chunk in enumerate(self.streams[inode]):
            self.log.append(("read", (inode, n)))
            yield chunk


def _run(
    monkeypatch: pytest.MonkeyPatch,
    streams: dict[int, list[bytes]],
    log: list[tuple[str, Any]] | None = None,
) -> tuple[list[tuple[str, Any]], list[Any]]:
    log = [] if log is None else log
    fs = _FakeFs(streams, log)
    heads = {chunks[0][:HEAD_SIZE]: inode for inode, chunks in streams.items()}
    monkeypatch.setattr(worker, "_media", lambda container, paths: None)
    monkeypatch.setattr(worker, "_filesystem", lambda *args: fs)

    def typed(head: bytes) -> str:
        log.append(("type", heads[bytes(head)]))
        return "application/octet-stream"

    monkeypatch.setattr(worker, "detect_mime", typed)
    tasks = tuple(
        StreamTask(inode, "tsk", 0, inode, None, None, sum(map(len, chunks)), f"f{inode}.bin")
        for inode, chunks in streams.items()
    )
    results = worker._hash_unit(WorkUnit("raw", ("unused",), tasks, False, 0))
    return log, results


def _small(count: int) -> dict[int, list[bytes]]:
    return {i: [bytes([i]) * (100 + i)] for i in range(1, count + 1)}


def test_streams_read_whole_are_typed_after_the_others_were_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log, results = _run(monkeypatch, _small(5))
    assert [kind for kind, _ in log] == ["read"] * 5 + ["type"] * 5
    assert [what for kind, what in log if kind == "type"] == [1, 2, 3, 4, 5]
    assert [r.file_id for r in results] == [1, 2, 3, 4, 5]  # in the unit's order
    assert [r.bytes_read for r in results] == [101, 102, 103, 104, 105]
    assert all(r.mime == "application/octet-stream" for r in results)


def test_the_held_bytes_bound_a_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker, "TYPE_BATCH_BYTES", 200)  # two of these streams
    log, _ = _run(monkeypatch, _small(5))
    kinds = [kind for kind, _ in log]
    assert kinds == ["read", "read", "type", "type", "read", "read", "type", "type", "read",
                     "type"]  # fmt: skip
    monkeypatch.setattr(worker, "TYPE_BATCH_BYTES", 0)  # one by one, as before batching
    log, _ = _run(monkeypatch, _small(3))
    assert [kind for kind, _ in log] == ["read", "type"] * 3


def test_a_stream_of_several_chunks_is_typed_at_its_first(monkeypatch: pytest.MonkeyPatch) -> None:
    first = b"A" * HEAD_SIZE
    streams = {1: [b"x" * 50], 2: [first, b"B" * 100, b"C" * 100], 3: [b"y" * 60]}
    log, results = _run(monkeypatch, streams)
    # what the later chunks of stream 2 are kept for depends on its type: typed before them
    assert log.index(("type", 2)) < log.index(("read", (2, 1)))
    assert [r.file_id for r in results] == [1, 2, 3]
    assert results[1].bytes_read == HEAD_SIZE + 200


def test_a_stream_that_fails_keeps_its_place(monkeypatch: pytest.MonkeyPatch) -> None:
    streams = {1: [b"hello\n" * 20], 2: [b"lost\n" * 20], 3: [b"world\n" * 20]}

    class _Failing(_FakeFs):
        def read(self, inode: int, *args: Any) -> Iterator[bytes]:
            if inode == 2:
                raise OSError("unreadable run")
            yield from super().read(inode, *args)

    log: list[tuple[str, Any]] = []
    monkeypatch.setattr(worker, "_media", lambda container, paths: None)
    monkeypatch.setattr(worker, "_filesystem", lambda *args: _Failing(streams, log))
    tasks = tuple(StreamTask(i, "tsk", 0, i, None, None, len(c[0]), f"f{i}.txt")
                  for i, c in streams.items())  # fmt: skip
    results = worker._hash_unit(WorkUnit("raw", ("unused",), tasks, False, 0))
    assert [(r.file_id, r.status) for r in results] == [(1, "ok"), (2, "error"), (3, "ok")]
    assert "unreadable run" in (results[1].error or "")
    assert results[0].mime == results[2].mime == "text/plain"


def test_a_batch_is_typed_whole_ascii_heads_apart_and_alike_heads_together(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every head of a batch is typed before any stream's result is made; non-ASCII heads
    first, then ASCII ones, each group by its first bytes (libmagic runs on through one
    copy of its database after another); the results stay in the unit's order."""
    png, jpeg = b"\x89PNG\r\n\x1a\n" + bytes(100), b"\xff\xd8\xff\xe0" + bytes(100)
    streams = {1: [png], 2: [b"hello\n" * 20], 3: [jpeg], 4: [png + b"!"], 5: [b"world\n" * 20]}
    log: list[tuple[str, Any]] = []

    def checked(name: str, mime: str | None) -> None:
        log.append(("finish", name))

    monkeypatch.setattr(worker, "extension_mismatch", checked)
    log, results = _run(monkeypatch, streams, log)
    assert [what for kind, what in log if kind == "type"] == [1, 4, 3, 2, 5]
    assert [kind for kind, _ in log] == ["read"] * 5 + ["type"] * 5 + ["finish"] * 5
    assert [what for kind, what in log if kind == "finish"] == [f"f{i}.bin" for i in range(1, 6)]
    assert [r.file_id for r in results] == [1, 2, 3, 4, 5]
