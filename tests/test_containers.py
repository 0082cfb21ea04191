"""Container detection, segment sets, expected hashes."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from examkit.errors import EvidenceError, UsageError
from examkit.evidence import group_images, open_media, parse_expect, verify
from examkit.plugins import registry
from examkit_plugins.containers.split import split_segments


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_numeric_and_alphabetic_split_sets(tmp_path: Path) -> None:
    for n in (1, 2, 3):
        _write(tmp_path / f"disk.{n:03d}", bytes([n]) * 10)
    assert [p.name for p in split_segments(tmp_path / "disk.002")] == [
        "disk.001", "disk.002", "disk.003",
    ]  # fmt: skip
    for s in ("aa", "ab"):
        _write(tmp_path / f"img.{s}", b"x")
    assert [p.name for p in split_segments(tmp_path / "img.aa")] == ["img.aa", "img.ab"]
    _write(tmp_path / "single.001", b"x")
    assert split_segments(tmp_path / "single.001") == []


def test_split_set_reads_across_segment_boundaries(tmp_path: Path) -> None:
    data = bytes(range(256)) * 8
    for i in range(4):
        _write(tmp_path / f"d.{i:03d}", data[i * 512 : (i + 1) * 512])
    ((container, paths),) = group_images([tmp_path / "d.000"], registry().containers)
    assert container.name == "split-raw" and len(paths) == 4
    with open_media(container, paths) as media:
        assert media.size == len(data)
        assert media.read(500, 600) == data[500:1100]
        assert media.read(2000, 100) == data[2000:]
        assert b"".join(media.chunks(333)) == data


def test_every_segment_given_is_still_one_set(tmp_path: Path) -> None:
    for n in (1, 2):
        _write(tmp_path / f"disk.{n:03d}", b"x" * 10)
    groups = group_images([tmp_path / "disk.002", tmp_path / "disk.001"], registry().containers)
    assert len(groups) == 1 and [p.name for p in groups[0][1]] == ["disk.001", "disk.002"]


def test_compressed_image_gets_a_clear_error(tmp_path: Path) -> None:
    packed = tmp_path / "disk.raw.gz"
    packed.write_bytes(gzip.compress(b"\0" * 4096))
    ((container, paths),) = group_images([packed], registry().containers)
    with pytest.raises(EvidenceError, match="gzip-compressed"):
        open_media(container, paths)


def test_missing_image_gets_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EvidenceError, match="no such image"):
        group_images([tmp_path / "nope.dd"], registry().containers)


def test_parse_expect() -> None:
    assert parse_expect(["MD5:" + "A" * 32, "sha-256:" + "b" * 64]) == {
        "md5": "a" * 32, "sha256": "b" * 64,
    }  # fmt: skip
    with pytest.raises(UsageError):
        parse_expect(["md5:1234"])
    with pytest.raises(UsageError):
        parse_expect(["crc32:" + "0" * 8])


def test_verify_results() -> None:
    computed = {"md5": "a" * 32, "sha1": "b" * 40, "sha256": "c" * 64}
    assert verify(computed, {"md5": "a" * 32}).result == "match"
    assert verify(computed, {"md5": "f" * 32}).result == "mismatch"
    assert verify(computed, {}).result == "not_verifiable"


FIXTURES = Path(__file__).parent / "fixtures" / "images"


def _ewf_media(
    monkeypatch: pytest.MonkeyPatch, kept_bytes: int, direct: bool = False
) -> tuple[object, bytes]:
    """The fixture E01 opened, its chunks read by libewf (``direct``: from the segment
    files, plugins/containers/ewf_chunks.py), and the raw image it holds."""
    from examkit_plugins.containers import ewf

    monkeypatch.setattr(ewf, "KEPT_BYTES", kept_bytes)
    if not direct:
        monkeypatch.setattr(ewf.ChunkMap, "read", lambda paths: (None, "test: libewf only"))
    raw = gzip.decompress((FIXTURES / "ntfs.raw.gz").read_bytes())  # what the E01 holds
    media = ewf.EwfMedia(sorted(FIXTURES.glob("ntfs.E0*")))
    assert (media._map is not None) is direct  # type: ignore[attr-defined]
    return media, raw


@pytest.mark.parametrize("direct", [False, True], ids=["libewf", "direct"])
@pytest.mark.parametrize("kept_bytes", [0, 8 << 20, 4 * 32768])
def test_e01_reads_through_kept_chunks_equal_the_raw_image(
    monkeypatch: pytest.MonkeyPatch, kept_bytes: int, direct: bool
) -> None:
    """With ``EXAMKIT_EWF_CACHE_MB`` set, small reads come from decompressed chunks kept per
    image (plugins/containers/ewf.py; 0, the default: none kept), whether libewf or
    examkit reads the chunks; at any offset and length, across chunks and at the media's
    end, they give the bytes the raw image holds, and no more chunks are kept than the
    bound allows."""
    import random

    media, raw = _ewf_media(monkeypatch, kept_bytes, direct)
    assert media.size == len(raw)
    chunk = media._chunk  # type: ignore[attr-defined]
    rng = random.Random(7)
    lengths = [1, 511, 4096, 65536, 3 * chunk + 5, 9 * chunk, chunk]
    for _ in range(3000):
        offset = rng.randrange(0, media.size + 1024)
        length = rng.choice([*lengths, rng.randrange(1, 400_000)])
        assert media.read(offset, length) == raw[offset : offset + length], (offset, length)
        assert len(media._kept) * chunk <= kept_bytes  # type: ignore[attr-defined]
    for offset in (media.size - 1, media.size - chunk - 3, chunk - 1):  # the edges
        assert media.read(offset, 2 * chunk) == raw[offset : offset + 2 * chunk]
    media.close()


def test_e01_short_chunk_is_given_as_it_is_and_not_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    """A chunk libewf gives short (a damaged image) ends the read there, and is read again
    next time instead of being kept."""
    media, raw = _ewf_media(monkeypatch, 8 << 20)
    chunk = media._chunk  # type: ignore[attr-defined]
    real = media._handle  # type: ignore[attr-defined]
    calls: list[int] = []

    class Short:
        def read_buffer_at_offset(self, length: int, offset: int) -> bytes:
            calls.append(offset)
            data = real.read_buffer_at_offset(length, offset)
            return data[:100] if offset == 5 * chunk else data

    media._handle = Short()  # type: ignore[attr-defined]
    got = media.read(4 * chunk + 10, 3 * chunk)  # chunks 4, 5 (short) and 6
    assert got == raw[4 * chunk + 10 : 5 * chunk + 100]
    assert media.read(5 * chunk, 50) == raw[5 * chunk : 5 * chunk + 50]
    assert calls.count(5 * chunk) == 2 and calls.count(4 * chunk) == 1  # 4 kept, 5 not
    media._handle = real  # type: ignore[attr-defined]
    media.close()


def test_e01_handle_is_opened_again_after_long_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """libewf holds what it learns of the chunks until its handle is closed (~5.5 MiB a
    GiB read); after ``REOPEN_BYTES`` read through it the handle is opened again, and the
    bytes read across each reopening are still the raw image's."""
    from examkit_plugins.containers import ewf

    monkeypatch.setattr(ewf, "REOPEN_BYTES", 1 << 20)
    opened: list[object] = []
    real_open = ewf.EwfMedia._open

    def counted(self: object) -> object:
        opened.append(handle := real_open(self))  # type: ignore[arg-type]
        return handle

    monkeypatch.setattr(ewf.EwfMedia, "_open", counted)
    media, raw = _ewf_media(monkeypatch, 8 << 20)
    step = 9 * media._chunk  # type: ignore[attr-defined]  # a long read each time
    for offset in range(0, media.size, step):
        assert media.read(offset, step) == raw[offset : offset + step]
    assert len(opened) >= media.size // (2 << 20)  # opened again every ~1 MiB read
    media.close()


def test_e01_chunk_cache_size_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from examkit_plugins.containers import ewf

    for value, expected in (("", 0), ("8", 8 << 20), ("0", 0), ("lots", 0)):
        monkeypatch.setenv(ewf.CACHE_ENV, value)
        assert ewf._kept_bytes() == expected
