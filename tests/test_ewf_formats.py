"""The E01 chunk reader on every EWF format ewfacquire writes (images/ewf-formats/, built
by tests/fixtures/build_ewf_formats.py): E01-family sets are read directly, chunk for
chunk equal to the media and to the MD5 the acquisition stored; the others (SMART and
the original EWF) are left to libewf, which reads them."""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path

import pyewf
import pytest

from examkit_plugins.containers import ewf
from examkit_plugins.containers.ewf_chunks import COMPRESSED, ChunkMap
from tests.conftest import FIXTURES

BUNDLE = FIXTURES / "ewf-formats" / "ewf-formats.tar.xz"
DIRECT = ["encase2", "encase3", "encase4", "encase5", "encase6", "encase7", "encase7-v2",
          "ftk", "linen5", "linen6", "linen7", "ewfx"]  # fmt: skip
TO_LIBEWF = ["ewf", "smart"]


@pytest.fixture(scope="module")
def unpacked(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ewf-formats")
    with tarfile.open(BUNDLE, "r:xz") as tar:
        tar.extractall(folder, filter="data")
    return folder


def _media() -> bytes:
    """The media every member holds, made again by the build script's own code."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "build_ewf_formats", FIXTURES.parent / "build_ewf_formats.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    data: bytes = module.media()
    return data


def _paths(folder: Path, fmt: str) -> list[str]:
    (first,) = [
        p for p in folder.iterdir() if p.stem == fmt and p.suffix.lower() in (".e01", ".s01")
    ]
    return [str(p) for p in pyewf.glob(str(first))]


@pytest.mark.parametrize("fmt", DIRECT)
def test_e01_family_sets_are_read_directly_and_equal_the_media(unpacked: Path, fmt: str) -> None:
    """Every chunk read straight from the set, deflated and stored ones alike, equals the
    media's, and together they give the MD5 the acquisition stored."""
    paths = _paths(unpacked, fmt)
    found, why = ChunkMap.read(paths)
    assert found is not None, why
    media = _media()
    size = found.chunk_size
    assert found.media_size == len(media)
    kinds = set()
    for table in found.tables:
        entries = found._table_entries(table)
        assert entries is not None
        kinds |= {bool(e & COMPRESSED) for e in entries}
    assert kinds == {True, False}  # both deflated and stored chunks
    md5 = hashlib.md5()
    for index in range(len(media) // size):
        chunk = found.chunk(index)
        assert chunk == media[index * size : (index + 1) * size], (fmt, index)
        md5.update(chunk)
    handle = pyewf.handle()
    handle.open(paths, "r")
    assert md5.hexdigest() == handle.get_hash_value("MD5") == hashlib.md5(media).hexdigest()
    found.close()


@pytest.mark.parametrize("fmt", TO_LIBEWF)
def test_other_formats_are_left_to_libewf(unpacked: Path, fmt: str) -> None:
    """SMART and the original EWF have another volume section: the set is not read
    directly, and the media still reads whole through libewf."""
    paths = _paths(unpacked, fmt)
    found, why = ChunkMap.read(paths)
    assert found is None and "volume" in why
    media = ewf.EwfMedia([Path(p) for p in paths])
    assert media._map is None
    assert b"".join(media.chunks(1 << 18)) == _media()
    media.close()
