"""Type detection: libmagic's answer for a stream's head, remembered per head."""

from __future__ import annotations

import random
from typing import Any

import magic
import pytest

from examkit import filetype
from examkit.hashing import HEAD_SIZE


def _heads() -> list[bytes]:
    rng = random.Random(5)
    text = b"The quick brown fox jumps over the lazy dog.\n" * 200
    return [
        text[:HEAD_SIZE],
        text[: HEAD_SIZE - 1] + b"\x00",  # same but the last byte: no longer text
        b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01" + bytes(rng.randrange(256) for _ in range(500)),
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(40),
        b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + bytes(rng.randrange(256) for _ in range(300)),
        bytes(rng.randrange(256) for _ in range(HEAD_SIZE)),
        b"#!/bin/sh\necho hello\n",
    ]


@pytest.fixture
def fresh_cache() -> Any:
    filetype._mime_of_head.cache_clear()
    yield
    filetype._mime_of_head.cache_clear()


def test_answers_equal_libmagic_on_every_call(fresh_cache: None) -> None:
    oracle = magic.Magic(mime=True)  # a separate libmagic handle, no cache
    heads = _heads()
    expected = [oracle.from_buffer(head) for head in heads]
    assert expected[0] == "text/plain" and expected[1] != "text/plain"
    for _ in range(2):  # first from libmagic, then from the cache
        assert [filetype.detect_mime(head) for head in heads] == expected
    assert filetype._mime_of_head.cache_info().hits == len(heads)
    assert filetype.detect_mime(b"") == "inode/x-empty"


def test_a_head_seen_before_is_not_typed_again(
    fresh_cache: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = filetype._magic()
    calls: list[bytes] = []

    class Counting:
        def from_buffer(self, head: bytes) -> str:
            calls.append(head)
            return str(real.from_buffer(head))

    monkeypatch.setattr(filetype, "_magic", lambda: Counting())
    monkeypatch.setattr(filetype, "_text_magic", lambda: (None, "off"))  # every head to _magic
    heads = _heads()
    for head in heads + heads + [bytearray(heads[0])]:  # type: ignore[list-item]
        filetype.detect_mime(head)
    assert calls == heads  # each distinct head once, whatever its object type


def test_the_cache_is_bounded() -> None:
    info = filetype._mime_of_head.cache_info()
    assert info.maxsize == filetype.HEAD_CACHE
    assert filetype.HEAD_CACHE * HEAD_SIZE <= 8 * 1024 * 1024
