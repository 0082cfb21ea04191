"""Type detection: libmagic's answer for a stream's head, remembered per head."""

from __future__ import annotations

import hashlib
import random
from typing import Any

import magic
import pytest

from examkit import filetype
from examkit.hashing import HEAD_SIZE
from tests.conftest import run_count


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
    monkeypatch.setattr(filetype, "_binary_magic", lambda: (None, "off"))
    heads = _heads()
    for head in heads + heads + [bytearray(heads[0])]:  # type: ignore[list-item]
        filetype.detect_mime(head)
    assert calls == heads  # each distinct head once, whatever its object type


def test_the_cache_is_bounded() -> None:
    info = filetype._mime_of_head.cache_info()
    assert info.maxsize == filetype.HEAD_CACHE
    assert filetype.HEAD_CACHE * HEAD_SIZE <= 8 * 1024 * 1024


def test_the_run_records_how_the_workers_typed(
    fixture_images: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not the parent's guess: what a worker (here: this process, inline) says it used."""
    from examkit import magic_subset
    from examkit.scan import ScanOptions, scan

    image = fixture_images / "fat16.raw"
    options = ScanOptions(workers=1, verify_media=False, perceptual=False)
    scan(tmp_path / "pool.sqlite", [image], options=options)
    pooled = run_count(tmp_path / "pool.sqlite", "typed_by")
    assert pooled.startswith(f"libmagic {filetype.libmagic_version()}: ")
    if magic_subset.unavailable() is None:
        assert "ASCII text through its checked subset (on: " in pooled
    if magic_subset.unavailable() is None:
        assert "other heads through binary copies (on: " in pooled
    monkeypatch.setenv("EXAMKIT_FULL_MAGIC", "1")  # inline: this process decides
    filetype._text_magic.cache_clear()
    filetype._binary_magic.cache_clear()
    try:
        inline = ScanOptions(workers=0, verify_media=False, perceptual=False)
        scan(tmp_path / "inline.sqlite", [image], options=inline)
    finally:
        filetype._text_magic.cache_clear()  # loaded again once the variable is gone
        filetype._binary_magic.cache_clear()
    assert run_count(tmp_path / "inline.sqlite", "typed_by").endswith(
        "full database for every head (off: EXAMKIT_FULL_MAGIC is set);"
        " other heads: full database (off: EXAMKIT_FULL_MAGIC is set)"
    )


def test_a_worker_that_cannot_answer_is_recorded_as_unknown() -> None:
    from concurrent.futures import Future

    from examkit.scan import workers_typing

    class Broken:
        def submit(self, fn: Any) -> Future[str]:
            future: Future[str] = Future()
            future.set_exception(RuntimeError("the pool is shut down"))
            return future

    assert workers_typing(Broken()) == "unknown (RuntimeError: the pool is shut down)"  # type: ignore[arg-type]


def test_heads_alike_at_both_ends_get_their_own_answers() -> None:
    """The cache finds a head by its length and ends, but answers only for the very same
    head: two heads that differ in the middle are each typed (and typed again when they
    take each other's place); the least recently used head is dropped beyond the bound."""
    calls: list[bytes] = []

    def typer(head: bytes) -> str:
        calls.append(head)
        return hashlib.sha256(head).hexdigest()

    answers = filetype._HeadAnswers(typer, 2)
    a = b"x" * 100 + b"A" + b"y" * 100
    b = b"x" * 100 + b"B" + b"y" * 100
    for head in (a, b, a, b):
        assert answers(head) == hashlib.sha256(head).hexdigest()
    assert calls == [a, b, a, b]
    c, d = b"c" * 300, b"d" * 300
    assert answers(c) == answers(c) and answers(d) == answers(d)
    assert calls[4:] == [c, d] and answers.cache_info().currsize == 2
    answers(a)  # a third distinct key: the least recently used one (c's) is dropped
    answers(d)
    answers(c)
    assert calls[6:] == [a, c]  # d was still kept, c had been dropped


def test_the_cache_takes_calls_from_several_threads() -> None:
    """A Dask worker may type heads in several threads at once: the cache never fails and
    never gives one head another's answer (switching threads as often as possible)."""
    import sys
    import threading

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        answers = filetype._HeadAnswers(lambda head: hashlib.md5(head).hexdigest(), 4)
        heads = [b"x" * 70 + bytes([i]) + b"y" * 70 for i in range(12)]  # one short key
        errors: list[BaseException] = []

        def run(seed: int) -> None:
            rng = random.Random(seed)
            try:
                for _ in range(3000):
                    head = rng.choice(heads)
                    assert answers(head) == hashlib.md5(head).hexdigest()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(n,)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert not errors
    assert answers.cache_info().currsize <= 4


def test_a_copy_that_cannot_be_made_leaves_the_head_to_the_full_database(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A smaller database is written to a temporary file before libmagic loads it: with no
    room there, the head is typed by the full database, not left without a type."""
    text, binary = filetype._text_magic()[0], filetype._binary_magic()[0]
    if text is None or binary is None:
        pytest.skip("the smaller databases are not in use here")

    def no_room(*args: Any) -> Any:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(text, "copy_for", no_room)
    monkeypatch.setattr(binary, "handle", no_room)
    oracle = magic.Magic(mime=True)
    rng = random.Random(5)
    heads = [(f"line of words {i}\n").encode() * 40 for i in range(4)]
    heads += [b"<html><body>page</body></html>\n" * 20]
    heads += [bytes(rng.randrange(256) for _ in range(2048)) for _ in range(4)]
    for head in heads:
        assert filetype._type_head(head) == oracle.from_buffer(head)
