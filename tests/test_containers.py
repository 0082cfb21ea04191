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
