"""Plugin hook specifications: one ``register`` hook per plugin kind.

A plugin module implements any of these with ``@hookimpl`` and calls
``register(obj)`` for each object it provides; the core validates the objects,
orders them and records their versions (the pattern of ``llm`` and
``sqlite-utils``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

PROJECT = "examkit"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

Register = Callable[[Any], None]


@hookspec
def register_containers(register: Register) -> None:
    """Register evidence container formats (``examkit.evidence.Container``)."""


@hookspec
def register_volume_systems(register: Register) -> None:
    """Register partition-table readers (``examkit.walk.VolumeSystem``)."""


@hookspec
def register_volume_layers(register: Register) -> None:
    """Register volume layers: LVM, encryption, snapshots (``examkit.layers.VolumeLayer``)."""


@hookspec
def register_filesystems(register: Register) -> None:
    """Register file-system walkers (``examkit.walk.FileSystemWalker``)."""


@hookspec
def register_hashers(register: Register) -> None:
    """Register streaming digests (``examkit.hashing.Hasher``)."""


@hookspec
def register_image_hashers(register: Register) -> None:
    """Register perceptual image hashes (``examkit.perceptual.ImageHasher``)."""


@hookspec
def register_archive_formats(register: Register) -> None:
    """Register archive formats whose members are hashed (``examkit.archives.ArchiveFormat``)."""


@hookspec
def register_hashset_formats(register: Register) -> None:
    """Register hash-set file loaders (``examkit.hashformat.HashSetFormat``)."""


@hookspec
def register_report_formats(register: Register) -> None:
    """Register report formats (``examkit.reporting.ReportFormat``)."""
