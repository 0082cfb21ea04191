"""Split raw images: ``disk.001, disk.002 …`` (or ``.000``) and ``disk.aa, disk.ab …``."""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from pathlib import Path

from examkit import __version__
from examkit.evidence import Container, MediaStream
from examkit.hookspecs import Register, hookimpl

from .raw import FileSetMedia, packed_format

_NUMERIC = re.compile(r"^(?P<base>.+)\.(?P<num>\d{3,})$")
_ALPHA = re.compile(r"^(?P<base>.+)\.(?P<alpha>[a-z]{2,})$")


def _alpha_next(suffix: str) -> str:
    letters = list(suffix)
    i = len(letters) - 1
    while i >= 0:
        if letters[i] != "z":
            letters[i] = chr(ord(letters[i]) + 1)
            return "".join(letters)
        letters[i] = "a"
        i -= 1
    return "a" + "".join(letters)  # overflow: the set would need a longer suffix


def split_segments(path: Path) -> list[Path]:
    """The whole split set ``path`` belongs to, from its first segment on; [] if none."""
    name = path.name
    m = _NUMERIC.match(name)
    if m:
        base, num = m["base"], m["num"]
        width = len(num)
        first = 0 if (path.parent / f"{base}.{0:0{width}d}").exists() else 1
        segments = []
        n = first
        while (path.parent / f"{base}.{n:0{width}d}").exists():
            segments.append(path.parent / f"{base}.{n:0{width}d}")
            n += 1
        return segments if len(segments) > 1 else []
    m = _ALPHA.match(name)
    if m and all(c in string.ascii_lowercase for c in m["alpha"]):
        base, width = m["base"], len(m["alpha"])
        suffix = "a" * width
        segments = []
        while (path.parent / f"{base}.{suffix}").exists() and len(suffix) == width:
            segments.append(path.parent / f"{base}.{suffix}")
            suffix = _alpha_next(suffix)
        return segments if len(segments) > 1 else []
    return []


class SplitRawContainer(Container):
    name = "split-raw"
    version = __version__
    description = "split raw image (.001/.002… or .aa/.ab…)"
    priority = 10

    def detect(self, path: Path, head: bytes) -> bool:
        return packed_format(head) is None and path in split_segments(path)

    def segments(self, path: Path) -> list[Path]:
        return split_segments(path) or [path]

    def open(self, paths: Sequence[Path]) -> MediaStream:
        return FileSetMedia(self.name, paths)


@hookimpl
def register_containers(register: Register) -> None:
    register(SplitRawContainer())
