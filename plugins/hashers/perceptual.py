"""Perceptual image hashes: PDQ (``pdqhash``, Meta's reference C++), pHash and dHash
(``imagehash``).

Hex conventions, so hashes compare with other tools' output:
- PDQ: 64 hex digits, the 256 bits in the order ``pdqhash.compute`` returns
  them, most significant first (the convention of Meta's python-threatexchange).
- pHash and dHash: ``str(imagehash.ImageHash)``, 16 hex digits (64 bits).
"""

from __future__ import annotations

from typing import Any

from examkit.hookspecs import Register, hookimpl
from examkit.perceptual import ImageHasher


def _version(package: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


class PdqHasher(ImageHasher):
    name = "pdq"
    bits = 256
    description = "PDQ 256-bit perceptual hash with quality (pdqhash)"

    def __init__(self) -> None:
        self.version = _version("pdqhash")

    def compute(self, image: Any) -> tuple[str, int | None]:
        import numpy as np
        import pdqhash

        vector, quality = pdqhash.compute(np.asarray(image, dtype=np.uint8))
        packed = np.packbits(np.asarray(vector, dtype=np.uint8))
        return packed.tobytes().hex(), int(quality)


class ImagehashHasher(ImageHasher):
    bits = 64

    def __init__(self, name: str, function: str, description: str) -> None:
        self.name = name
        self._function = function
        self.description = description
        self.version = _version("ImageHash")

    def compute(self, image: Any) -> tuple[str, int | None]:
        import imagehash

        return str(getattr(imagehash, self._function)(image)), None


@hookimpl
def register_image_hashers(register: Register) -> None:
    register(PdqHasher())
    register(ImagehashHasher("phash", "phash", "pHash, DCT of 32x32 grey (imagehash)"))
    register(ImagehashHasher("dhash", "dhash", "dHash, gradient of 9x8 grey (imagehash)"))
