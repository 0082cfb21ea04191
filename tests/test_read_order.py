"""From E01, a worker reads a unit's streams in the order their data lie on the media
(``examkit.worker._read_order``), and answers in the unit's own order."""

from __future__ import annotations

import gzip
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from examkit import worker
from examkit.models import StreamTask, WorkUnit
from examkit.plugins import registry
from examkit_plugins.filesystems import tsk
from tests.conftest import FIXTURES, do_scan, query

pytestmark = pytest.mark.skipif(
    shutil.which("istat") is None, reason="The Sleuth Kit not installed"
)
E01 = tuple(str(p) for p in sorted(FIXTURES.glob("ntfs.E0*")))


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[StreamTask]]:
    """The raw NTFS fixture (what the E01 holds), its scan, and a task for each stream of
    content it recorded."""
    folder = tmp_path_factory.mktemp("order")
    image = folder / "ntfs.raw"
    image.write_bytes(gzip.decompress((FIXTURES / "ntfs.raw.gz").read_bytes()))
    case = folder / "case.sqlite"
    do_scan(case, [image], workers=1)
    rows = query(
        case,
        "SELECT f.file_id, fs.walker, fs.offset, f.inode, f.attr_type, f.attr_id, f.size,"
        " coalesce(f.stream, f.name), v.chain FROM files f JOIN filesystems fs"
        " ON fs.filesystem_id = f.filesystem_id JOIN volumes v ON v.volume_id = fs.volume_id"
        " WHERE f.status = 'ok' AND f.size > 0 AND f.meta_type = 'file' ORDER BY f.file_id",
    )
    return image, case, [StreamTask(*row) for row in rows]


def _istat_first_block(image: Path, task: StreamTask) -> int | None:
    """The first block istat lists for the stream's $DATA attribute (None: resident)."""
    out = subprocess.run(
        ["istat", "-o", str(task.fs_offset // 512), str(image), str(task.inode)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    if task.attr_type is None:
        kind, name = r"\$DATA \(128-\d+\)", "N/A"
    else:
        kind, name = rf"\S+ \({task.attr_type}-{task.attr_id}\)", r"\S+"
    pattern = rf"Type: {kind}\s+Name: {name}\s+(\S+)[^\n]*\n([^\n]*)"
    found = re.search(pattern, out)
    assert found, (task, out)
    if found.group(1) != "Non-Resident":
        return None
    return int(found.group(2).split()[0])


def test_data_offset_is_the_first_block_istat_lists(
    scanned: tuple[Path, Path, list[StreamTask]],
) -> None:
    """The Sleuth Kit walker's ``data_offset`` is the stream's first block, as istat
    lists it (None for resident data), for every stream of the fixture."""
    image, _, tasks = scanned
    walker = registry().get("filesystems", "tsk")
    media = registry().get("containers", "raw").open([image])
    fs = walker.open(media, tasks[0].fs_offset, media.size - tasks[0].fs_offset)
    block = fs.info.block_size
    resident = placed = 0
    for task in tasks:
        expected = _istat_first_block(image, task)
        got = fs.data_offset(task.inode, task.attr_type, task.attr_id)
        assert got == (None if expected is None else expected * block), task
        resident += expected is None
        placed += expected is not None
    assert resident and placed > 5  # both kinds are in the fixture
    media.close()


Stream = tuple[int, int | None, int | None]  # inode, attribute type and id


def _hash(unit: WorkUnit, monkeypatch: pytest.MonkeyPatch) -> tuple[list[Stream], list[Any]]:
    """Hash ``unit`` in this process; the streams in the order they were read, and the
    results."""
    read: list[Stream] = []
    real = tsk.TskFileSystem.read

    def recorded(self: Any, inode: int, attr_type: Any, attr_id: Any, size: int) -> Any:
        read.append((inode, attr_type, attr_id))
        return real(self, inode, attr_type, attr_id, size)

    monkeypatch.setattr(tsk.TskFileSystem, "read", recorded)
    worker._close()
    try:
        return read, worker._hash_unit(unit)
    finally:
        worker._close()


def test_streams_from_e01_are_read_in_disk_order_and_answered_in_the_units(
    scanned: tuple[Path, Path, list[StreamTask]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """From the E01, the unit's streams are read in the order of their first blocks
    (resident ones first, as listed), as istat gives them; the results come back in the
    unit's order, each with the digests the raw image's scan recorded."""
    image, case, tasks = scanned
    listed = list(reversed(tasks))  # far from disk order
    read, results = _hash(WorkUnit("ewf", E01, tuple(listed), False, 0), monkeypatch)
    assert [r.file_id for r in results] == [t.file_id for t in listed]
    first = {(t.inode, t.attr_type, t.attr_id): _istat_first_block(image, t) for t in tasks}
    blocks = [first[stream] for stream in read]
    resident = [b for b in blocks if b is None]
    assert blocks[: len(resident)] == resident  # resident data first
    placed = blocks[len(resident) :]
    assert len(placed) > 5 and placed == sorted(placed)
    as_listed = [first[(t.inode, t.attr_type, t.attr_id)] for t in listed]
    assert [b for b in as_listed if b is not None] != placed  # so the order was changed
    recorded = dict(query(case, "SELECT file_id, sha256 FROM files"))
    assert {r.file_id: r.digests["sha256"] for r in results} == {
        t.file_id: recorded[t.file_id] for t in listed
    }


def test_streams_from_a_raw_image_are_read_as_listed(
    scanned: tuple[Path, Path, list[StreamTask]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reads from a raw image cost the same in any order: the unit is read as listed."""
    image, _, tasks = scanned
    listed = list(reversed(tasks))
    read, results = _hash(WorkUnit("raw", (str(image),), tuple(listed), False, 0), monkeypatch)
    assert read == [(t.inode, t.attr_type, t.attr_id) for t in listed]
    assert [r.file_id for r in results] == [t.file_id for t in listed]
