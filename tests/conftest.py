"""Shared fixtures: the corpus, unpacked images, scanning helpers."""

from __future__ import annotations

import gzip
import lzma
import os
import shutil
import sqlite3
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from examkit.scan import ScanOptions, scan

ROOT = Path(__file__).resolve().parents[1]
CORPUS = Path(os.environ.get("EXAMKIT_CORPUS", ROOT.parent / "shared" / "corpus"))
FIXTURES = ROOT / "tests" / "fixtures" / "images"
HASHSET_FIXTURES = ROOT / "tests" / "fixtures" / "hashsets"


@pytest.fixture(scope="session")
def _session_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("examkit-cache")


@pytest.fixture(autouse=True)
def _own_hashset_library(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: Any, _session_cache: Path
) -> None:
    """Every test gets an empty hash-set library (the examiner's real one is never touched),
    no user config file, and the suite's own cache folder (examkit.magic_cache)."""
    monkeypatch.setenv("EXAMKIT_HASHSETS", str(tmp_path_factory.mktemp("hashset-library")))
    monkeypatch.setenv("EXAMKIT_CACHE", str(_session_cache))
    monkeypatch.delenv("EXAMKIT_CONFIG", raising=False)
    for name in ("EXAMKIT_WORKERS", "EXAMKIT_CLUSTER", "EXAMKIT_EXAMINER"):
        monkeypatch.delenv(name, raising=False)
    config_home = tmp_path_factory.mktemp("config-home")
    monkeypatch.setattr("platformdirs.user_config_dir", lambda *a, **k: str(config_home))


def sparse_copy(src: Any, dst: Path) -> None:
    """Write a stream to ``dst``, leaving holes for all-zero blocks (images are mostly zeros)."""
    block = 1 << 20
    zero = bytes(block)
    with open(dst, "wb") as out:
        while True:
            data = src.read(block)
            if not data:
                break
            if data == zero[: len(data)]:
                out.seek(len(data), os.SEEK_CUR)
            else:
                out.write(data)
        out.truncate()


def unpack(path: Path, folder: Path) -> Path:
    """A usable image for ``path``: itself, or its decompressed copy in ``folder``."""
    name = path.name
    if name.endswith(".tar.xz"):
        with tarfile.open(path) as tar:
            member = next(m for m in tar.getmembers() if m.isfile())
            target = folder / (name[: -len(".tar.xz")] + "-" + Path(member.name).name)
            if not target.exists():
                sparse_copy(tar.extractfile(member), target)
        return target
    for suffix, opener in ((".gz", gzip.open), (".xz", lzma.open)):
        if name.endswith(suffix):
            target = folder / name[: -len(suffix)]
            if not target.exists():
                with opener(path, "rb") as src:
                    sparse_copy(src, target)
            return target
    return path


@pytest.fixture(scope="session")
def corpus() -> Path:
    if not (CORPUS / "MANIFEST.md").exists():
        pytest.skip(f"corpus not present at {CORPUS} (set EXAMKIT_CORPUS)")
    return CORPUS


@pytest.fixture(scope="session")
def unpacked(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("unpacked")


@pytest.fixture(scope="session")
def fixture_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The committed fixture images, decompressed (E01 segments copied as they are)."""
    if not FIXTURES.exists():
        pytest.skip("fixture images not built")
    folder = tmp_path_factory.mktemp("fixtures")
    for item in sorted(FIXTURES.iterdir()):
        if item.name.endswith(".gz"):
            unpack(item, folder)
        elif item.suffix.upper().startswith(".E0"):
            shutil.copy(item, folder / item.name)
    return folder


def do_scan(case: Path, images: list[Path], **kwargs: Any) -> Any:
    opts = kwargs.pop("options", None) or ScanOptions(workers=kwargs.pop("workers", 2))
    return scan(case, images, examiner="pytest", options=opts, argv=["pytest"], **kwargs)


def file_rows(case: Path, evidence_id: str | None = None) -> list[dict[str, Any]]:
    conn = sqlite3.connect(case)
    conn.row_factory = sqlite3.Row
    try:
        sql = "SELECT * FROM files"
        params: tuple[Any, ...] = ()
        if evidence_id:
            sql += " WHERE evidence_id = ?"
            params = (evidence_id,)
        return [dict(r) for r in conn.execute(sql + " ORDER BY file_id", params)]
    finally:
        conn.close()


ID_COLUMNS = frozenset({"file_id", "evidence_id", "run_id", "volume_id", "filesystem_id"})


def comparable_rows(case: Path, skip: frozenset[str] = ID_COLUMNS) -> list[tuple[Any, ...]]:
    """The ``files`` rows without the columns that differ between equal scans."""
    return [tuple(v for k, v in sorted(r.items()) if k not in skip) for r in file_rows(case)]


def query(case: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(case)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def run_count(case: Path, key: str) -> str:
    """One entry of the (only) run's ``counts``: ``typed_by``, ``digested_by`` ..."""
    import json

    ((counts,),) = query(case, "SELECT counts FROM runs")
    return str(json.loads(counts)[key])


def dict_rows(case: Path, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """Rows of a query on a case, as dicts."""
    conn = sqlite3.connect(case)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, params)]
    finally:
        conn.close()


@pytest.fixture
def case_path(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "case.sqlite"


def compile_magic(folder: Path, name: str, source: str) -> Path:
    """A magic source compiled by libmagic itself (``magic_compile``): ``folder/name.mgc``."""
    import ctypes

    import magic

    (folder / name).write_text(source)
    lib = magic.libmagic
    lib.magic_open.restype, lib.magic_open.argtypes = ctypes.c_void_p, [ctypes.c_int]
    lib.magic_compile.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.magic_close.argtypes = [ctypes.c_void_p]
    cookie, cwd = lib.magic_open(0), os.getcwd()
    os.chdir(folder)  # libmagic writes NAME.mgc in the working folder
    try:
        assert lib.magic_compile(cookie, name.encode()) == 0
    finally:
        os.chdir(cwd)
        lib.magic_close(cookie)
    return folder / f"{name}.mgc"
