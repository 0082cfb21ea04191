"""Perceptual hashes of images: decode once, safely and at reduced size, hash with every plugin.

A stream whose detected type (libmagic, never the extension) is an image is
kept in memory while it is read (at most ``MAX_IMAGE_BYTES``), then decoded
here with Pillow: the first frame only; JPEG in draft mode (the decoder's own
DCT scaling to 1/2, 1/4 or 1/8) and other formats with an integer box
reduction, so that the shorter side stays at least ``DECODE_SIZE`` pixels;
then converted to RGB. Every image-hasher plugin (PDQ, pHash, dHash ...) hashes
that one decoded image. ``docs/perceptual.md`` gives the measured fidelity of
the reduced decode against full resolution.

Nothing decoded here is ever shown: only hashes and a status leave this module.
A bad image never raises: it gets a status (``truncated``, ``corrupt``,
``bomb``, ``too_large``, ``unsupported``, ``error``) and a one-line detail.
"""

from __future__ import annotations

import io
import struct
import warnings
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# Types the perceptual step decodes (libmagic's names for them).
IMAGE_MIMES = frozenset({
    "image/jpeg", "image/png", "image/gif", "image/bmp", "image/x-ms-bmp", "image/tiff",
    "image/webp", "image/heic", "image/heif", "image/heic-sequence", "image/heif-sequence",
})  # fmt: skip
PILLOW_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP", "HEIF")  # JPEG covers MPO

DECODE_SIZE = 512  # shorter side kept at least this large by the reduced decode
MAX_IMAGE_BYTES = 64 << 20  # an image stream larger than this is not decoded: too_large
MAX_PIXELS = 89_478_485  # Pillow's own decompression-bomb limit (Image.MAX_IMAGE_PIXELS)

OK = "ok"
TRUNCATED = "truncated"
CORRUPT = "corrupt"
BOMB = "bomb"
TOO_LARGE = "too_large"
UNSUPPORTED = "unsupported"
ERROR = "error"


class ImageHasher(ABC):
    """An image-hasher plugin (registered with ``register_image_hashers``)."""

    name: str
    bits: int  # length of the hash; its hex has bits / 4 characters
    version: str = "0"
    description: str = ""

    @abstractmethod
    def compute(self, image: Any) -> tuple[str, int | None]:
        """``(hex, quality)`` of an RGB ``PIL.Image``; quality ``None`` if the method has none."""


@dataclass(frozen=True)
class ImageResult:
    """What the perceptual step found for one image stream."""

    status: str
    detail: str | None = None
    hashes: Mapping[str, tuple[str, int | None]] = field(default_factory=dict)
    width: int | None = None  # as stored in the file, before any reduction
    height: int | None = None


class ImageProblem(Exception):
    """An image that cannot be hashed: carries the status to record."""

    def __init__(self, status: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


_opener_ready = False


def _pillow() -> Any:
    """Pillow, with the HEIF opener registered when pillow-heif is installed."""
    global _opener_ready
    from PIL import Image, ImageFile

    if not _opener_ready:
        try:
            from pillow_heif import register_heif_opener

            register_heif_opener()
        except ImportError:  # HEIC/HEIF then come out 'unsupported'
            pass
        ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated image is reported, not padded
        _opener_ready = True
    return Image


def decode(data: bytes, size: int = DECODE_SIZE, reduce: bool = True) -> tuple[Any, int, int]:
    """The first frame of an image as RGB (reduced unless ``reduce`` is false), with the
    stored width and height. Raises :class:`ImageProblem`."""
    image_module = _pillow()
    from PIL import UnidentifiedImageError

    if len(data) > MAX_IMAGE_BYTES:
        raise ImageProblem(TOO_LARGE, f"{len(data):,} bytes (limit {MAX_IMAGE_BYTES:,})")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # decoder chatter; problems come back as statuses
        warnings.simplefilter("error", image_module.DecompressionBombWarning)
        try:
            image = image_module.open(io.BytesIO(data), formats=PILLOW_FORMATS)
        except UnidentifiedImageError as exc:
            raise ImageProblem(CORRUPT, "not a readable image (Pillow cannot identify it)") from exc
        except (image_module.DecompressionBombError, image_module.DecompressionBombWarning) as exc:
            raise ImageProblem(BOMB, _one_line(exc)) from exc
        width, height = image.size
        if width <= 0 or height <= 0:
            raise ImageProblem(CORRUPT, f"image size {width}x{height}")
        if width * height > MAX_PIXELS:
            raise ImageProblem(
                BOMB, f"{width}x{height} = {width * height:,} pixels (limit {MAX_PIXELS:,})"
            )
        try:
            if reduce and image.format in ("JPEG", "MPO"):
                image.draft("RGB", (size, size))  # DCT scaling: the shorter side stays >= size
            image.load()  # the first frame of an animation
            factor = min(image.size) // size if reduce else 0
            if factor >= 2:
                image = image.reduce(factor)
            rgb = image.convert("RGB")
        except (image_module.DecompressionBombError, image_module.DecompressionBombWarning) as exc:
            raise ImageProblem(BOMB, _one_line(exc)) from exc
        except OSError as exc:
            text = _one_line(exc)
            lowered = text.lower()
            cut = ("truncat", "end of file", "not enough data")
            status = TRUNCATED if any(c in lowered for c in cut) else CORRUPT
            raise ImageProblem(status, text) from exc
        except (ValueError, SyntaxError, IndexError, struct.error) as exc:
            raise ImageProblem(CORRUPT, _one_line(exc)) from exc
        except MemoryError as exc:
            raise ImageProblem(BOMB, "out of memory decoding the image") from exc
    return rgb, width, height


def hash_image(data: bytes, mime: str | None, hashers: Sequence[ImageHasher]) -> ImageResult:
    """Decode ``data`` once and hash it with every image hasher; never raises."""
    if not hashers:
        return ImageResult(UNSUPPORTED, "no image hasher is installed")
    try:
        image, width, height = decode(data)
    except ImageProblem as problem:
        if problem.status == CORRUPT and mime in ("image/heic", "image/heif") and not _has_heif():
            return ImageResult(UNSUPPORTED, "HEIC/HEIF needs the pillow-heif package")
        return ImageResult(problem.status, problem.detail)
    except Exception as exc:  # a decoder bug must not stop the scan
        return ImageResult(ERROR, _one_line(exc))
    hashes: dict[str, tuple[str, int | None]] = {}
    try:
        for hasher in hashers:
            hashes[hasher.name] = hasher.compute(image)
    except Exception as exc:
        return ImageResult(ERROR, f"{hasher.name}: {_one_line(exc)}", hashes, width, height)
    return ImageResult(OK, None, hashes, width, height)


def hash_kept(
    mime: str | None, size: int, kept: list[bytes] | None, hashers: Sequence[ImageHasher]
) -> ImageResult | None:
    """Perceptual hashes of a stream from the chunks kept while it was read (``None`` kept:
    too large to keep); ``None`` for anything that is not an image."""
    if not hashers or mime not in IMAGE_MIMES:
        return None
    if size > MAX_IMAGE_BYTES or kept is None:
        return ImageResult(TOO_LARGE, f"{size:,} bytes (limit {MAX_IMAGE_BYTES:,})")
    return hash_image(b"".join(kept), mime, hashers)


def near_values(image: ImageResult | None) -> tuple[str | None, int | None, str | None]:
    """``(pdq, pdq_quality, phash)`` of an image result, what near matching needs."""
    if image is None:
        return None, None, None
    pdq, quality = image.hashes.get("pdq", (None, None))
    return pdq, quality, image.hashes.get("phash", (None, None))[0]


def _has_heif() -> bool:
    try:
        import pillow_heif  # noqa: F401
    except ImportError:
        return False
    return True


def _one_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return f"{type(exc).__name__}: {lines[-1] if lines else ''}".rstrip(": ")[:200]


def hamming_hex(a: str, b: str) -> int:
    """Bits that differ between two hashes of the same length, given in hex."""
    return (int(a, 16) ^ int(b, 16)).bit_count()
