"""Volume layers: what sits between a partition and a file system.

A layer plugin recognises a region of a stream (an LVM2 physical volume, a LUKS,
BitLocker or FileVault volume, a volume with shadow copies) and opens it into one
or more new streams: logical volumes, the decrypted volume, each snapshot. Every
new stream is a volume of its own, walked like a partition (and looked at for
layers again: LUKS inside LVM, LVM inside LUKS).

Where a volume lives is a *chain*: the layer steps from the evidence's media to
the stream, each ``[layer, offset, length, member]`` (``member`` names which of
the layer's streams: an LV name, ``decrypted``, ``vss-1``). The chain is stored
with the volume and handed to workers, which open the same layers themselves.

Secrets (``--unlock``) never leave memory: the chain and the case hold which
volume was unlocked and with which *kind* of secret, never the secret.
"""

from __future__ import annotations

import contextlib
import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UsageError
from .evidence import MediaStream
from .models import MediaInfo

SECRET_KINDS = ("password", "recovery-key", "key-file")
MAX_DEPTH = 4  # layers inside layers (LUKS in LVM in LUKS ...)


class Locked(Exception):
    """The layer needs a secret it was not given (or none of the given ones opens it)."""


@dataclass(frozen=True)
class Secret:
    """A password, recovery key or key file's bytes; its value never prints."""

    kind: str  # password | recovery-key | key-file
    value: bytes = field(repr=False)
    source: str = ""  # the key file's path, for messages (never the secret)

    def __str__(self) -> str:
        return f"{self.kind}{' ' + self.source if self.source else ''}"

    @property
    def text(self) -> str:
        return self.value.decode("utf-8", "surrogateescape")


@dataclass(frozen=True)
class Unlock:
    """``--unlock VOLUME=KIND:VALUE``: which volume (an identifier such as a LUKS UUID or
    BitLocker GUID, a volume number as ``examkit volumes`` lists them, or ``*`` for any)."""

    volume: str
    secret: Secret = field(repr=False)

    def applies(self, index: int | None, identifiers: Mapping[str, str]) -> bool:
        want = self.volume.strip().lower()
        if want in ("*", "any", "all"):
            return True
        if index is not None and want in (str(index), f"v{index}"):
            return True
        values = {str(v).lower().strip("{}") for v in identifiers.values() if v}
        return want.strip("{}") in values

    def describe(self) -> str:
        """What the custody log may say: the volume selector and the kind of secret."""
        return f"{self.volume} ({self.secret.kind})"


def parse_unlock(text: str, base: Path | None = None) -> Unlock:
    """``VOLUME=password:TEXT`` | ``VOLUME=recovery-key:DIGITS`` | ``VOLUME=key-file:PATH``."""
    volume, sep, rest = text.partition("=")
    kind, sep2, value = rest.partition(":")
    hint = "write VOLUME=password:TEXT, VOLUME=recovery-key:KEY or VOLUME=key-file:PATH"
    if not sep or not sep2 or not volume.strip() or kind not in SECRET_KINDS or not value:
        if not sep:  # no VOLUME= part: the whole text may be the secret, so it is not shown
            raise UsageError("an --unlock value is not VOLUME=KIND:VALUE", hint)
        raise UsageError(f"--unlock for volume {volume.strip()!r} is not VOLUME=KIND:VALUE", hint)
    if kind == "key-file":
        path = Path(value).expanduser()
        if base is not None and not path.is_absolute():
            path = base / path
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise UsageError(
                f"--unlock {volume.strip()}: cannot read key file {path}: {exc.strerror}",
                "check the path",
            ) from exc
        return Unlock(volume.strip(), Secret(kind, data, str(path)))
    return Unlock(volume.strip(), Secret(kind, value.encode("utf-8")))


@dataclass(frozen=True)
class LayerProbe:
    """What a layer says about a region it recognises, before any secret is used."""

    kind: str  # encrypted | container | snapshots
    type: str  # LUKS2 | BitLocker | LVM2 | VSS ...
    identifiers: dict[str, str] = field(default_factory=dict)  # uuid, recovery-key id ...
    description: str = ""


@dataclass
class LayerOutput:
    """One stream a layer opened: a logical volume, the decrypted volume, a snapshot."""

    member: str
    kind: str  # logical | decrypted | snapshot
    stream: MediaStream
    description: str = ""
    unlocked_with: str | None = None  # the kind of secret that opened it (never the secret)


class VolumeLayer(ABC):
    """A volume-layer plugin."""

    name: str
    version: str = "0"
    description: str = ""
    priority: int = 50
    encrypted: bool = False  # opening needs a secret
    additive: bool = False  # the region is also walked as it is (shadow copies)
    opt_in: str | None = None  # a ScanOptions flag that must be on (``shadow_copies``)

    @abstractmethod
    def probe(self, media: MediaStream, offset: int, length: int) -> LayerProbe | None:
        """A cheap signature check; ``None`` when the region is not this layer's."""

    @abstractmethod
    def open(
        self,
        media: MediaStream,
        offset: int,
        length: int,
        secrets: Sequence[Secret] = (),
    ) -> list[LayerOutput]:
        """The region's streams; raise ``Locked`` without a working secret."""


class LayerStream(MediaStream):
    """A stream opened by a layer, read through ``read_at(offset, length)``."""

    def __init__(self, parent: MediaStream, size: int, reader: Any, keep: Iterable[Any] = ()):
        info = parent.info
        super().__init__(MediaInfo(info.container, info.paths, size, info.sector_size))
        self._reader = reader
        self._keep = list(keep)  # objects that must live as long as the stream (libyal handles)

    def read(self, offset: int, length: int) -> bytes:
        if offset >= self.size or length <= 0:
            return b""
        data: bytes = self._reader(offset, min(length, self.size - offset))
        return data

    def close(self) -> None:
        for obj in reversed(self._keep):
            closer = getattr(obj, "close", None)
            if closer is not None:
                with contextlib.suppress(Exception):  # a broken handle must not hide the error
                    closer()
        self._keep = []


class RegionFile:
    """A read-only, seekable file object over ``length`` bytes of a stream from ``offset``
    (what libyal bindings' ``open_file_object`` call: read, seek, tell, get_size)."""

    def __init__(self, media: MediaStream, offset: int, length: int) -> None:
        self._media = media
        self._offset = offset
        self._length = max(0, min(length, media.size - offset))
        self._pos = 0

    def read(self, size: int = -1) -> bytes:
        remaining = self._length - self._pos
        if size is None or size < 0 or size > remaining:
            size = remaining
        if size <= 0:
            return b""
        data = self._media.read(self._offset + self._pos, size)
        self._pos += len(data)
        return data

    def read_at(self, offset: int, size: int) -> bytes:
        """``size`` bytes at ``offset`` of the region, leaving the file position alone."""
        size = max(0, min(size, self._length - offset))
        return self._media.read(self._offset + offset, size) if size and offset >= 0 else b""

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence == 1:
            offset += self._pos
        elif whence == 2:
            offset += self._length
        if offset < 0:
            raise OSError("negative seek offset")
        self._pos = offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def get_size(self) -> int:
        return self._length

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        """The stream belongs to its owner: nothing to release."""


Step = tuple[str, int, int, str]  # layer, offset, length, member


def chain_text(steps: Sequence[Step]) -> str | None:
    """The chain as stored in the case (``None``: the evidence's media itself)."""
    return json.dumps([list(s) for s in steps], separators=(",", ":")) if steps else None


def chain_steps(text: str | None) -> list[Step]:
    if not text:
        return []
    return [(str(a), int(b), int(c), str(d)) for a, b, c, d in json.loads(text)]


def secrets_for(
    unlocks: Sequence[Unlock], index: int | None, identifiers: Mapping[str, str]
) -> list[Secret]:
    """The secrets given for a volume, most specific first (named before ``*``)."""
    named = [u.secret for u in unlocks if u.volume != "*" and u.applies(index, identifiers)]
    wild = [u.secret for u in unlocks if u.volume == "*"]
    return named + wild


def open_chain(
    media: MediaStream,
    text: str | None,
    layers: Sequence[VolumeLayer],
    unlocks: Sequence[Unlock] = (),
    opened: list[MediaStream] | None = None,
) -> MediaStream:
    """The stream at the end of a chain, opened layer by layer from the media.

    ``opened`` collects the intermediate streams so the caller can close them.
    """
    stream = media
    by_name = {layer.name: layer for layer in layers}
    for name, offset, length, member in chain_steps(text):
        layer = by_name.get(name)
        if layer is None:
            raise OSError(f"volume layer {name!r} is not installed")
        probe = layer.probe(stream, offset, length)
        ids = probe.identifiers if probe else {}
        # the volume's number is not known here: secrets named by number are tried too
        secrets = secrets_for(unlocks, None, ids) or [u.secret for u in unlocks]
        outputs = layer.open(stream, offset, length, secrets)
        found = None
        for out in outputs:
            if out.member == member:
                found = out
            else:
                out.stream.close()
        if found is None:
            raise OSError(f"{name} has no volume {member!r} any more")
        stream = found.stream
        if opened is not None:
            opened.append(stream)
    return stream
