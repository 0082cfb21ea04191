"""E01 chunks read straight from the segment files (plugins/containers/ewf_chunks.py),
checked against libewf and the acquisition's stored MD5, and damage left to libewf."""

from __future__ import annotations

import gzip
import hashlib
import shutil
from pathlib import Path

import pyewf
import pytest

from examkit_plugins.containers import ewf
from examkit_plugins.containers.ewf_chunks import TABLE_HEADER, ChunkMap

FIXTURES = Path(__file__).parent / "fixtures" / "images"
CORPUS_E01 = [
    "dfvfs-ext2.E01",  # libewf 20140812
    "plaso-image.E01",  # libewf 20131210
    "plaso-image-split.E01",  # two segments
    "tsk-image.E01",  # libewf 20140406
    "tsk-imageformat_mmls_1.E01",  # FTK Imager
    "velociraptor-test.ntfs.dd.E01",  # ewfacquire, case metadata
]


def _libewf(paths: list[str]) -> object:
    handle = pyewf.handle()
    handle.open(paths, "r")
    return handle


def _every_chunk_equals_libewf(paths: list[str]) -> None:
    """Each chunk read directly equals libewf's, and all of them the stored MD5."""
    found, why = ChunkMap.read(paths)
    assert found is not None, why
    handle = _libewf(paths)
    assert (found.chunk_size, found.media_size) == (
        handle.get_chunk_size(),  # type: ignore[attr-defined]
        handle.get_media_size(),  # type: ignore[attr-defined]
    )
    md5 = hashlib.md5()
    for index in range(-(-found.media_size // found.chunk_size)):
        data = found.chunk(index)
        assert data is not None, index
        at = index * found.chunk_size
        assert data == handle.read_buffer_at_offset(len(data), at), index  # type: ignore[attr-defined]
        md5.update(data)
    stored = handle.get_hash_value("MD5")  # type: ignore[attr-defined]
    assert md5.hexdigest() == stored
    found.close()


def test_fixture_chunks_equal_libewf_and_the_stored_md5() -> None:
    """The fixture: ewfacquire, three segments, deflated and stored chunks."""
    _every_chunk_equals_libewf([str(p) for p in sorted(FIXTURES.glob("ntfs.E0*"))])


@pytest.mark.parametrize("name", CORPUS_E01)
def test_corpus_chunks_equal_libewf_and_the_stored_md5(corpus: Path, name: str) -> None:
    """E01s written by four versions of libewf and by FTK Imager."""
    _every_chunk_equals_libewf(pyewf.glob(str(corpus / name)))


def _copy_fixture(tmp_path: Path) -> list[str]:
    paths = []
    for p in sorted(FIXTURES.glob("ntfs.E0*")):
        shutil.copy(p, tmp_path / p.name)
        paths.append(str(tmp_path / p.name))
    return paths


def _flip(path: str, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x5A]))


def _chunk_place(found: ChunkMap, compressed: bool) -> tuple[int, str, int]:
    """A chunk of the given kind: its index, segment file and offset there."""
    for table in found.tables:
        entries = found._table_entries(table)
        assert entries is not None
        for at, entry in enumerate(entries):
            if bool(entry >> 31) is compressed:
                offset = table.base + (entry & 0x7FFFFFFF)
                return table.first + at, found.paths[table.segment], offset
    raise AssertionError("no such chunk in the fixture")


@pytest.mark.parametrize("compressed", [True, False], ids=["deflated", "stored"])
def test_a_damaged_chunk_is_left_to_libewf(tmp_path: Path, compressed: bool) -> None:
    """A chunk whose data fails its checksum is not given by the direct reader; the media
    then gives what libewf gives for it, and every other chunk as before."""
    paths = _copy_fixture(tmp_path)
    found, _ = ChunkMap.read(paths)
    assert found is not None
    index, path, offset = _chunk_place(found, compressed)
    found.close()
    _flip(path, offset + 10)
    found, _ = ChunkMap.read(paths)
    assert found is not None and found.chunk(index) is None
    size = found.chunk_size
    assert found.chunk(index + 1) is not None
    found.close()

    media = ewf.EwfMedia([Path(p) for p in paths])
    assert media._map is not None  # the rest is still read directly
    oracle = _libewf(paths)
    raw = gzip.decompress((FIXTURES / "ntfs.raw.gz").read_bytes())
    at = index * size
    for offset, length in ((at, size), (at + 100, size), (max(0, at - 4 * size), 12 * size)):
        got = media.read(offset, length)
        assert got == oracle.read_buffer_at_offset(length, offset)  # type: ignore[attr-defined]
    other = (index + 3) * size
    assert media.read(other, size) == raw[other : other + size]
    media.close()


def test_a_table_failing_its_checksum_is_left_to_libewf(tmp_path: Path) -> None:
    """Entries that fail their checksum are not used: libewf reads those chunks (from its
    copy of the table, ``table2``), and the media still equals the raw image."""
    paths = _copy_fixture(tmp_path)
    found, _ = ChunkMap.read(paths)
    assert found is not None
    table = found.tables[0]
    found.close()
    _flip(paths[table.segment], table.entries_at + 4 * table.count)  # the entries' checksum
    found, _ = ChunkMap.read(paths)
    assert found is not None and found.chunk(table.first) is None
    found.close()
    media = ewf.EwfMedia([Path(p) for p in paths])
    raw = gzip.decompress((FIXTURES / "ntfs.raw.gz").read_bytes())
    assert b"".join(media.chunks(1 << 20)) == raw
    media.close()


def test_a_damaged_section_chain_leaves_the_whole_set_to_libewf(tmp_path: Path) -> None:
    """A section descriptor failing its checksum: the set is read by libewf alone (the
    reason kept on the media), which gives the same bytes, or the same failure, for every
    part of the media as libewf itself."""
    paths = _copy_fixture(tmp_path)
    found, _ = ChunkMap.read(paths)
    assert found is not None
    last = found.tables[-1]  # its section descriptor's padding, in the last segment
    _flip(paths[last.segment], last.entries_at - TABLE_HEADER.size - 30)
    found, why = ChunkMap.read(paths)
    assert found is None and "checksum" in why
    media = ewf.EwfMedia([Path(p) for p in paths])
    assert media._map is None and "checksum" in media.reader
    oracle = _libewf(paths)
    raw = gzip.decompress((FIXTURES / "ntfs.raw.gz").read_bytes())
    step, failed = 1 << 20, 0
    for offset in range(0, media.size, step):
        try:
            expected = oracle.read_buffer_at_offset(step, offset)  # type: ignore[attr-defined]
        except OSError:
            failed += 1
            with pytest.raises(OSError):
                media.read(offset, step)
            continue
        assert media.read(offset, step) == expected == raw[offset : offset + step]
    assert 0 < failed < media.size // step  # libewf reads the other segments
    media.close()


def test_a_set_out_of_order_is_left_to_libewf(tmp_path: Path) -> None:
    """Segments given in the wrong order (or a missing one) are not read directly."""
    paths = _copy_fixture(tmp_path)
    found, why = ChunkMap.read([paths[1], paths[0], paths[2]])
    assert found is None and "sequence" in why
    found, why = ChunkMap.read(paths[:2])
    assert found is None and "chunks" in why


def test_the_direct_reader_keeps_few_tables_and_files(monkeypatch: pytest.MonkeyPatch) -> None:
    """At most ``TABLES_KEPT`` tables' entries and ``FILES_KEPT`` files are held, whatever
    the set's size; reading through them still gives libewf's bytes."""
    from examkit_plugins.containers import ewf_chunks

    monkeypatch.setattr(ewf_chunks, "TABLES_KEPT", 1)
    monkeypatch.setattr(ewf_chunks, "FILES_KEPT", 1)
    paths = [str(p) for p in sorted(FIXTURES.glob("ntfs.E0*"))]
    found, _ = ChunkMap.read(paths)
    assert found is not None and len(found.tables) > 1
    handle = _libewf(paths)
    size = found.chunk_size
    count = found.media_size // size
    for index in [*range(0, count, 7), *range(count - 1, 0, -11)]:
        assert found.chunk(index) == handle.read_buffer_at_offset(size, index * size)  # type: ignore[attr-defined]
        assert len(found._entries) <= 1 and len(found._fds) <= 1
    found.close()


def test_zlib_inflates_the_same_when_isal_is_absent(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without ISA-L, zlib inflates the chunks: the same bytes, and a damaged chunk is still
    refused."""
    import zlib

    from examkit_plugins.containers import ewf_chunks

    monkeypatch.setattr(ewf_chunks, "_inflate", zlib.decompress)
    monkeypatch.setattr(ewf_chunks, "_InflateError", zlib.error)
    _every_chunk_equals_libewf([str(p) for p in sorted(FIXTURES.glob("ntfs.E0*"))])
    paths = _copy_fixture(tmp_path)
    found, _ = ChunkMap.read(paths)
    assert found is not None
    index, path, offset = _chunk_place(found, compressed=True)
    found.close()
    _flip(path, offset + 10)
    found, _ = ChunkMap.read(paths)
    assert found is not None and found.chunk(index) is None
    found.close()
