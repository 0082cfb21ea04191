"""The plugin manager: first-party plugins plus entry-point group ``examkit``."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from types import ModuleType
from typing import Any, TypeVar

import pluggy

from . import __version__, hookspecs
from .archives import ArchiveFormat
from .errors import PluginError
from .evidence import Container
from .hashformat import HashSetFormat
from .hashing import Hasher
from .layers import VolumeLayer
from .perceptual import ImageHasher
from .reporting import ReportFormat
from .walk import FileSystemWalker, VolumeSystem

FIRST_PARTY = (
    "examkit_plugins.containers.ewf",
    "examkit_plugins.containers.vmdk",
    "examkit_plugins.containers.vhdi",
    "examkit_plugins.containers.qcow",
    "examkit_plugins.containers.split",
    "examkit_plugins.containers.raw",
    "examkit_plugins.volumes.tsk",
    "examkit_plugins.volumes.luks",
    "examkit_plugins.volumes.bitlocker",
    "examkit_plugins.volumes.filevault",
    "examkit_plugins.volumes.lvm",
    "examkit_plugins.volumes.shadow_copies",
    "examkit_plugins.filesystems.tsk",
    "examkit_plugins.filesystems.apfs",
    "examkit_plugins.filesystems.xfs",
    "examkit_plugins.hashers.crypto",
    "examkit_plugins.hashers.perceptual",
    "examkit_plugins.archives.tar_format",
    "examkit_plugins.archives.zipfile_format",
    "examkit_plugins.archives.sevenzip_format",
    "examkit_plugins.archives.gzip_format",
    "examkit_plugins.hashsets.encase",
    "examkit_plugins.hashsets.nsrl",
    "examkit_plugins.hashsets.nsrl_rds2",
    "examkit_plugins.hashsets.vics",
    "examkit_plugins.hashsets.icse",
    "examkit_plugins.hashsets.hashkeeper",
    "examkit_plugins.hashsets.text",
    "examkit_plugins.hashsets.pdq",
    "examkit_plugins.reports.tables",
    "examkit_plugins.reports.dfxml",
    "examkit_plugins.reports.vics_export",
    "examkit_plugins.reports.caseuco",
    "examkit_plugins.reports.court",
)

# First-party plugin modules whose kinds only a scan's parent uses (it reads the hash-set
# files and writes the reports): a pool's fork server builds its workers' registry without
# them (``for_workers``).
PARENT_ONLY = (".hashsets.", ".reports.")
_workers_only = False


def for_workers() -> None:
    """Called by a pool's fork server before its first ``registry()`` (``examkit.preload``):
    the registry its workers inherit leaves out the parent-only plugin modules (17-28 ms
    less of a preload that delays every scan's listing). Third-party plugins all load."""
    global _workers_only
    _workers_only = True


# kind -> (hook name, required base class)
KINDS: dict[str, tuple[str, type]] = {
    "containers": ("register_containers", Container),
    "volume_systems": ("register_volume_systems", VolumeSystem),
    "volume_layers": ("register_volume_layers", VolumeLayer),
    "filesystems": ("register_filesystems", FileSystemWalker),
    "hashers": ("register_hashers", Hasher),
    "image_hashers": ("register_image_hashers", ImageHasher),
    "archive_formats": ("register_archive_formats", ArchiveFormat),
    "hashset_formats": ("register_hashset_formats", HashSetFormat),
    "report_formats": ("register_report_formats", ReportFormat),
}

T = TypeVar("T")


@dataclass(frozen=True)
class PluginRecord:
    """One registered plugin object, for listings and run records."""

    kind: str
    name: str
    version: str
    module: str
    distribution: str
    description: str


class Registry:
    """Collected, validated and ordered plugin objects of every kind."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm
        self._objects: dict[str, list[Any]] = {}
        self._records: list[PluginRecord] = []
        dists = {id(p): d for p, d in pm.list_plugin_distinfo()}
        for kind, (hook_name, base) in KINDS.items():
            found: list[Any] = []
            hook = getattr(pm.hook, hook_name)
            for impl in hook.get_hookimpls():
                module = impl.plugin
                dist = dists.get(id(module))
                collected: list[Any] = []
                impl.function(register=collected.append)
                for obj in collected:
                    self._check(kind, base, obj, found, module)
                    found.append(obj)
                    self._records.append(
                        PluginRecord(
                            kind=kind,
                            name=obj.name,
                            version=str(getattr(obj, "version", "0")),
                            module=getattr(module, "__name__", str(module)),
                            distribution=(
                                f"{dist.project_name} {dist.version}"
                                if dist
                                else f"examkit {__version__}"
                            ),
                            description=str(getattr(obj, "description", "")),
                        )
                    )
            found.sort(key=lambda o: (-int(getattr(o, "priority", 50)), o.name))
            self._objects[kind] = found

    @staticmethod
    def _check(kind: str, base: type, obj: Any, found: list[Any], module: Any) -> None:
        where = getattr(module, "__name__", str(module))
        if not isinstance(obj, base):
            raise PluginError(
                f"plugin {where} registered a {type(obj).__name__} as {kind}",
                f"{kind} must subclass {base.__module__}.{base.__name__}",
            )
        name = getattr(obj, "name", "")
        if not isinstance(name, str) or not name:
            raise PluginError(f"plugin {where} registered {kind} without a name", "set .name")
        if any(o.name == name for o in found):
            raise PluginError(
                f"two plugins register {kind} named {name!r}",
                "uninstall one of them, or rename the plugin's object",
            )

    def all(self, kind: str) -> list[Any]:
        return list(self._objects[kind])

    def get(self, kind: str, name: str) -> Any:
        for obj in self._objects[kind]:
            if obj.name == name:
                return obj
        raise PluginError(
            f"no {kind} plugin named {name!r}", "run 'examkit plugins' to list what is installed"
        )

    @property
    def containers(self) -> list[Container]:
        return self.all("containers")

    @property
    def volume_systems(self) -> list[VolumeSystem]:
        return self.all("volume_systems")

    @property
    def volume_layers(self) -> list[VolumeLayer]:
        return self.all("volume_layers")

    @property
    def filesystems(self) -> list[FileSystemWalker]:
        return self.all("filesystems")

    @property
    def hashers(self) -> list[Hasher]:
        return self.all("hashers")

    @property
    def image_hashers(self) -> list[ImageHasher]:
        return self.all("image_hashers")

    @property
    def archive_formats(self) -> list[ArchiveFormat]:
        return self.all("archive_formats")

    @property
    def hashset_formats(self) -> list[HashSetFormat]:
        return self.all("hashset_formats")

    @property
    def report_formats(self) -> list[ReportFormat]:
        return self.all("report_formats")

    def records(self) -> list[PluginRecord]:
        return list(self._records)

    def versions(self) -> dict[str, str]:
        """``{"kind/name": "version (distribution)"}`` for run records."""
        return {f"{r.kind}/{r.name}": f"{r.version} ({r.distribution})" for r in self._records}


def _load(pm: pluggy.PluginManager, name: str, loader: Callable[[str], ModuleType]) -> None:
    try:
        module = loader(name)
    except ImportError as exc:
        raise PluginError(
            f"cannot import plugin {name}: {exc}", "reinstall examkit ('make demo' does it)"
        ) from exc
    pm.register(module, name=name)


def plugin_manager(entry_points: bool = True) -> pluggy.PluginManager:
    """A plugin manager with the first-party plugins and (optionally) entry points."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for name in FIRST_PARTY:
        if _workers_only and any(part in name for part in PARENT_ONLY):
            continue
        _load(pm, name, importlib.import_module)
    if entry_points and not getattr(sys, "_examkit_no_entry_points", False):
        try:
            pm.load_setuptools_entrypoints(hookspecs.PROJECT)
        except Exception as exc:
            raise PluginError(
                f"a third-party examkit plugin failed to load: {exc}",
                "uninstall or fix it; 'pip list' shows what is installed",
            ) from exc
    return pm


@lru_cache(maxsize=1)
def registry() -> Registry:
    """The process-wide registry (each worker process builds its own)."""
    return Registry(plugin_manager())


def distribution_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"
