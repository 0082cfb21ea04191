"""What is read out of libmagic's database is kept between runs, and never trusted blindly.

The oracle is a fresh read of the database (``magic_subset.build``, ``magic_binary.build``):
what comes back from the kept file must equal it, and a damaged or foreign file must not
change it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from examkit import magic_binary, magic_cache, magic_subset

pytest.importorskip("examkit._magic_native", reason="examkit._magic_native not built")


@pytest.fixture(scope="module")
def mgc() -> bytes:
    if magic_subset.unavailable() is not None:
        pytest.skip(f"smaller libmagic not usable here: {magic_subset.unavailable()}")
    data, why = magic_subset.usable_database()
    assert data is not None, why
    return data


KINDS: list[tuple[str, Any, Any, Any]] = [
    ("text", magic_subset.build, magic_subset._encode, magic_subset._decode),
    ("binary", magic_binary.build, magic_binary._encode, magic_binary._decode),
]


def _counting(build: Any) -> tuple[Any, list[int]]:
    calls: list[int] = []

    def counted(data: bytes) -> Any:
        calls.append(1)
        return build(data)

    return counted, calls


@pytest.mark.parametrize(("kind", "build", "encode", "decode"), KINDS)
def test_kept_equals_a_fresh_read(mgc: bytes, tmp_path: Path, monkeypatch: Any, kind: str,
                                  build: Any, encode: Any, decode: Any) -> None:  # fmt: skip
    monkeypatch.setenv("EXAMKIT_CACHE", str(tmp_path))
    fresh = build(mgc)
    counted, calls = _counting(build)
    first = magic_cache.kept(kind, mgc, counted, encode, decode)
    (path,) = tmp_path.glob(f"{kind}-*.json")
    again = magic_cache.kept(kind, mgc, counted, encode, decode)
    assert len(calls) == 1  # read once, then loaded
    assert first == fresh and again == fresh
    assert again.mgc is mgc  # the database itself is not kept, only what was read of it
    assert os.path.getsize(path) < len(mgc) // 10


def _sealed(text: str, value: Any) -> str:
    """A file with the right name and a digest that fits its (wrong) value."""
    body = json.dumps(value)
    key = json.loads(text.split("\n", 1)[0])["key"]
    return json.dumps({"key": key, "sha256": hashlib.sha256(body.encode()).hexdigest()}) + (
        "\n" + body
    )


@pytest.mark.parametrize(
    "damage",
    [
        lambda text: "",
        lambda text: text[: len(text) // 2],
        lambda text: text.replace('"key": "', '"key": "0', 1),  # another database's file
        lambda text: text.replace("[[[[", "[[[[9999999999,", 1),
        lambda text: text[:-200] + text[-200:].replace("1", "2"),  # altered, still JSON
        lambda text: _sealed(text, [[1, 2], "x"]),  # sealed, but not what it should be
    ],
)
def test_a_damaged_file_is_read_again(mgc: bytes, tmp_path: Path, monkeypatch: Any,
                                      damage: Any) -> None:  # fmt: skip
    monkeypatch.setenv("EXAMKIT_CACHE", str(tmp_path))
    kind, build, encode, decode = KINDS[0]
    fresh = magic_cache.kept(kind, mgc, build, encode, decode)
    (path,) = tmp_path.glob(f"{kind}-*.json")
    path.write_text(damage(path.read_text()))
    counted, calls = _counting(build)
    assert magic_cache.kept(kind, mgc, counted, encode, decode) == fresh
    assert len(calls) == 1
    assert magic_cache.kept(kind, mgc, counted, encode, decode) == fresh  # written anew
    assert len(calls) == 1


def test_another_database_or_reader_is_another_file(mgc: bytes, tmp_path: Path,
                                                    monkeypatch: Any) -> None:  # fmt: skip
    monkeypatch.setenv("EXAMKIT_CACHE", str(tmp_path))
    kind, build, encode, decode = KINDS[0]
    magic_cache.kept(kind, mgc, build, encode, decode)
    monkeypatch.setattr(magic_cache, "_code_digest", lambda: "changed reader")
    counted, calls = _counting(build)
    magic_cache.kept(kind, mgc, counted, encode, decode)
    assert len(calls) == 1 and len(list(tmp_path.glob(f"{kind}-*.json"))) == 2


def test_off_or_unwritable_costs_only_time(mgc: bytes, tmp_path: Path, monkeypatch: Any) -> None:
    kind, build, encode, decode = KINDS[1]
    fresh = build(mgc)
    monkeypatch.setenv("EXAMKIT_CACHE", "off")
    assert magic_cache.cache_folder() is None
    assert magic_cache.kept(kind, mgc, build, encode, decode) == fresh
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("EXAMKIT_CACHE", str(blocked / "magic"))
    assert magic_cache.kept(kind, mgc, build, encode, decode) == fresh
    assert blocked.read_text() == "not a folder"


def test_loaded_typers_come_from_the_kept_files(tmp_path: Path, monkeypatch: Any,
                                                mgc: bytes) -> None:  # fmt: skip
    """magic_subset.load and magic_binary.load keep their reads, and still check the copies
    made from a kept file against the full database (same status line both times)."""
    monkeypatch.setenv("EXAMKIT_CACHE", str(tmp_path))
    text, why = magic_subset.load()
    binary, why_binary = magic_binary.load()
    assert text is not None and binary is not None, (why, why_binary)
    assert {p.name.split("-")[0] for p in tmp_path.glob("*.json")} == {"text", "binary"}
    text2, why2 = magic_subset.load()
    binary2, why_binary2 = magic_binary.load()
    assert text2 is not None and binary2 is not None
    assert (why2, why_binary2) == (why, why_binary)
    assert text2.subset == text.subset and binary2.subset == binary.subset


def test_files_left_by_an_upgrade_are_removed_once_stale(mgc: bytes, tmp_path: Path,
                                                         monkeypatch: Any) -> None:  # fmt: skip
    monkeypatch.setenv("EXAMKIT_CACHE", str(tmp_path))
    kind, build, encode, decode = KINDS[0]
    old, recent, other_kind = (tmp_path / "text-old.json", tmp_path / "text-recent.json",
                               tmp_path / "binary-old.json")  # fmt: skip
    for path in (old, recent, other_kind):
        path.write_text("{}")
    long_ago = time.time() - magic_cache.STALE_SECONDS - 86400
    for path in (old, other_kind):
        os.utime(path, (long_ago, long_ago))
    magic_cache.kept(kind, mgc, build, encode, decode)  # written: the others are looked at
    assert not old.exists() and recent.exists() and other_kind.exists()
    (current,) = [p for p in tmp_path.glob("text-*.json") if p != recent]
    os.utime(current, (long_ago, long_ago))
    magic_cache.kept(kind, mgc, build, encode, decode)  # loaded, not written: nothing removed
    assert current.exists() and recent.exists()
