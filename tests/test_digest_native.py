"""The one-pass MD5 + SHA-1 + SHA-256 (examkit/_digest_native.c) against hashlib and coreutils."""

from __future__ import annotations

import hashlib
import random
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from examkit import hashing
from tests.conftest import run_count

native = pytest.importorskip("examkit._digest_native", reason="the compiled digest is not built")
pytestmark = pytest.mark.skipif(
    not native.supported(), reason="this processor lacks the SHA extensions"
)

THREE = ("md5", "sha1", "sha256")


def _hashlib(data: bytes) -> tuple[str, ...]:
    return tuple(hashlib.new(name, data).hexdigest() for name in THREE)


def test_every_length_and_split_gives_hashlibs_digests() -> None:
    """Every padding case (lengths 0-300), lengths around the GIL hand-over (16 KiB) and
    a few MiB, each fed whole and in random pieces."""
    rng = random.Random(1321)
    lengths = [*range(301), 16_383, 16_384, 16_385, 65_536 + 63, 3 * 1024 * 1024 + 5]
    for n in lengths:
        data = rng.randbytes(n)
        whole = native.Triple()
        whole.update(data)
        pieces = native.Triple()
        cuts = sorted(rng.randrange(n + 1) for _ in range(rng.randrange(1, 6)))
        for a, b in zip([0, *cuts], [*cuts, n], strict=True):
            pieces.update(data[a:b])
        assert whole.hexdigests() == _hashlib(data), n
        assert pieces.hexdigests() == _hashlib(data), n


def test_digests_can_be_read_midway_and_any_buffer_is_taken() -> None:
    data = bytes(range(256)) * 100
    t = native.Triple()
    t.update(bytearray(data[:1000]))
    assert t.hexdigests() == _hashlib(data[:1000])  # reading does not end the stream
    t.update(memoryview(data)[1000:])
    assert t.hexdigests() == _hashlib(data)
    with pytest.raises(TypeError):
        t.update("text")  # type: ignore[arg-type]


def test_misuse_raises_instead_of_giving_wrong_digests() -> None:
    bare = native.Triple.__new__(native.Triple)  # never initialised: no state to hash with
    with pytest.raises(RuntimeError, match="not initialised"):
        bare.update(b"abc")
    with pytest.raises(RuntimeError, match="not initialised"):
        bare.hexdigests()


@pytest.mark.skipif(shutil.which("md5sum") is None, reason="coreutils' md5sum is missing")
def test_a_file_gives_what_coreutils_gives(tmp_path: Path) -> None:
    path = tmp_path / "stream.bin"
    path.write_bytes(random.Random(4).randbytes(5_000_003))
    t = native.Triple()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            t.update(chunk)
    tools = ("md5sum", "sha1sum", "sha256sum")
    want = tuple(
        subprocess.run(
            [tool, str(path)], capture_output=True, text=True, check=True
        ).stdout.split()[0]
        for tool in tools
    )
    assert t.hexdigests() == want


def test_streams_use_it_and_keep_the_digests_order() -> None:
    assert hashing.native_triple()[0] is native.Triple
    assert hashing.digests_used().startswith("md5, sha1 and sha256 in one pass")
    from examkit.plugins import registry

    hashers = [h for h in registry().hashers if h.name in THREE][::-1]
    data = random.Random(9).randbytes(3 * hashing.CHUNK_SIZE + 17)
    chunks = [data[i : i + hashing.CHUNK_SIZE] for i in range(0, len(data), hashing.CHUNK_SIZE)]
    got = hashing.hash_stream(chunks, hashers).hexdigests()
    assert list(got) == [h.name for h in hashers]
    assert got == {name: hashlib.new(name, data).hexdigest() for name in THREE}


def test_a_hasher_that_is_not_standard_is_fed_itself() -> None:
    """A plugin that replaces md5 (``standard`` left False) gets every chunk; the one pass
    is not used for the three, and the others still give hashlib's digests."""
    from examkit.plugins import registry

    fed: list[int] = []

    class Counting(hashing.Hasher):
        name = "md5"

        def new(self) -> hashing.HashObject:
            inner = hashlib.md5()

            class Obj:
                def update(self, data: bytes) -> None:
                    fed.append(len(data))
                    inner.update(data)

                def hexdigest(self) -> str:
                    return inner.hexdigest()

            return Obj()

    others = [h for h in registry().hashers if h.name in ("sha1", "sha256")]
    data = random.Random(3).randbytes(100_000)
    got = hashing.hash_stream([data[:60_000], data[60_000:]], [Counting(), *others])
    assert got.hexdigests() == {name: hashlib.new(name, data).hexdigest() for name in THREE}
    assert fed == [60_000, 40_000]


def test_the_variable_turns_it_off() -> None:
    code = (
        "from examkit import hashing; print(hashing.native_triple()[0]);"
        " print(hashing.digests_used())"
    )
    env = {"EXAMKIT_NATIVE_DIGESTS": "0"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, env={**_environ(), **env})  # fmt: skip
    assert done.stdout.splitlines() == [
        "None",
        "hashlib (OpenSSL) for each digest (EXAMKIT_NATIVE_DIGESTS=0)",
    ]


def test_a_failed_check_falls_back_to_hashlib(monkeypatch: pytest.MonkeyPatch) -> None:
    real = native.Triple

    class Wrong:  # drops the last byte of 64-byte updates
        def __init__(self) -> None:
            self.t = real()

        def update(self, data: bytes) -> None:
            self.t.update(data[:-1] if len(data) == 64 else data)

        def hexdigests(self) -> tuple[str, str, str]:
            return self.t.hexdigests()  # type: ignore[no-any-return]

    monkeypatch.setattr(native, "Triple", Wrong)
    monkeypatch.setattr(hashing, "_triple", None)
    assert hashing.native_triple() == (
        None,
        "its digests differed from hashlib's for a 64-byte message",
    )
    monkeypatch.setattr(hashing, "_triple", None)  # decided again for the other tests


def _environ() -> dict[str, str]:
    import os

    return dict(os.environ)


def _files(case: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(case) as conn:
        return conn.execute(
            "SELECT path, md5, sha1, sha256 FROM files ORDER BY path, md5"
        ).fetchall()


def test_a_scan_records_it_and_equals_a_hashlib_scan(
    fixture_images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from examkit.scan import ScanOptions, scan

    image = fixture_images / "ntfs.raw"
    options = ScanOptions(workers=1, verify_media=False, perceptual=False)
    scan(tmp_path / "native.sqlite", [image], options=options)
    assert run_count(tmp_path / "native.sqlite", "digested_by").startswith(
        "md5, sha1 and sha256 in one pass (examkit._digest_native, SHA extensions; gave"
    )
    monkeypatch.setenv("EXAMKIT_NATIVE_DIGESTS", "0")  # inline: this process decides
    monkeypatch.setattr(hashing, "_triple", None)
    inline = ScanOptions(workers=0, verify_media=False, perceptual=False)
    scan(tmp_path / "hashlib.sqlite", [image], options=inline)
    assert run_count(tmp_path / "hashlib.sqlite", "digested_by") == (
        "hashlib (OpenSSL) for each digest (EXAMKIT_NATIVE_DIGESTS=0)"
    )
    native_rows = _files(tmp_path / "native.sqlite")
    assert native_rows == _files(tmp_path / "hashlib.sqlite")
    assert sum(1 for row in native_rows if row[1]) > 5
    monkeypatch.setattr(hashing, "_triple", None)
