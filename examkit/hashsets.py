"""The hash-set library: compiled sets in one folder, imported atomically, once each.

Default folder: the user data folder (platformdirs) ``.../examkit/hashsets``;
``EXAMKIT_HASHSETS`` or an explicit path overrides it. Each set is a folder
named after the set (``examkit.hashdb``); an import builds in a hidden staging
folder and is renamed into place only when complete, so a failed import leaves
the library as it was. A file whose SHA-256 is already in the library is not
imported again.
"""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from .clock import utc_now
from .errors import UsageError
from .hashdb import INDEX_FORMAT, HashSetIndex
from .hashformat import HEAD_BYTES, HashSetError, HashSetFormat
from .hashset_folders import MANIFEST, NAME, default_dir, set_folder

if TYPE_CHECKING:  # imported where used: a lookup needs neither (process start time)
    from .models import HashSetInfo

KINDS = {"known-bad": "known_bad", "known-good": "known_good"}


def normalise_kind(kind: str) -> str:
    key = kind.strip().lower().replace("_", "-")
    if key not in KINDS:
        raise UsageError(f"unknown hash-set kind {kind!r}", "use known-bad or known-good")
    return KINDS[key]


@dataclass(frozen=True)
class ImportResult:
    info: HashSetInfo
    created: bool  # False: the same file was already in the library
    malformed_examples: tuple[dict[str, Any], ...] = ()
    seconds: float = 0.0


class Library:
    """A folder of compiled hash sets."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path else default_dir()

    # -- reading ---------------------------------------------------------
    def sets(self) -> list[HashSetInfo]:
        if not self.path.is_dir():
            return []
        found = []
        for folder in sorted(self.path.iterdir()):
            if folder.name.startswith(".") or not (folder / MANIFEST).is_file():
                continue
            found.append(_info(folder))
        return found

    def folder(self, name: str) -> Path:
        """The folder of the set called ``name`` (it must exist)."""
        return set_folder(self.path, name)

    def get(self, name: str) -> HashSetInfo:
        return _info(self.folder(name))

    def open(self, name: str) -> HashSetIndex:
        return HashSetIndex(self.folder(name))

    def select(self, names: list[str] | None) -> list[HashSetInfo]:
        """The named sets (each must exist), or every set when ``names`` is None."""
        return self.sets() if names is None else [self.get(n) for n in names]

    # -- writing ---------------------------------------------------------
    def remove(self, name: str) -> str:
        """Remove a set (a damaged one too); returns what it was, for the message."""
        folder = self.path / name
        if not NAME.match(name) or not folder.is_dir():
            raise UsageError(f"no hash set named {name!r} in {self.path}",
                             "'examkit hashset list' shows the sets")  # fmt: skip
        try:
            what = f"{name} ({_info(folder).entries:,} entries)"
        except HashSetError:
            what = f"{name} (damaged)"
        with self._locked():
            trash = self.path / f".trash-{uuid.uuid4().hex}"
            os.rename(folder, trash)
        shutil.rmtree(trash, ignore_errors=True)
        return what

    def import_set(
        self,
        source: Path,
        name: str,
        kind: str,
        fmt: HashSetFormat | None = None,
        formats: list[HashSetFormat] | None = None,
        category_profile: str | None = None,
        strict: bool = False,
        description: str | None = None,
    ) -> ImportResult:
        """Compile ``source`` into the library as ``name`` (see the module doc)."""
        from .categories import load_profile
        from .hashdb_write import IndexWriter

        started = time.monotonic()
        kind = normalise_kind(kind)
        if not NAME.match(name):
            raise UsageError(
                f"invalid hash-set name {name!r}",
                "use up to 64 letters, digits, '.', '_' and '-', starting with a letter or digit",
            )
        source = Path(source)
        if not source.is_file():
            raise UsageError(f"no file at {source}", "check the path of the hash-set file")
        profile = load_profile(category_profile, self.path / "profiles")
        self.path.mkdir(parents=True, exist_ok=True)
        existing = {i.name: i for i in self.sets()}
        if name in existing:
            if existing[name].source_sha256 == _sha256(source):
                return ImportResult(existing[name], False, (), time.monotonic() - started)
            raise UsageError(
                f"a different hash set is already named {name!r}",
                "choose another --name, or 'examkit hashset remove' the old one first",
            )
        fmt = fmt or detect_format(source, formats or [])
        staging = self.path / f".staging-{uuid.uuid4().hex}"
        staging.mkdir()
        try:
            digest = _BackgroundSha256(source)
            writer = IndexWriter(staging, strict=strict)
            try:
                fmt.read(source, writer)
            except OSError as exc:
                raise HashSetError(f"cannot read {source}: {exc.strerror or exc}",
                                   "check the file and its permissions") from exc  # fmt: skip
            stats = writer.finish()
            sha256 = digest.result()
            if stats.entries == 0:
                raise HashSetError(
                    f"{source.name} holds no valid entries ({stats.malformed} malformed)",
                    f"is it really {fmt.name}? try --format",
                )
            with self._locked():
                for info in self.sets():
                    if info.source_sha256 == sha256:
                        return ImportResult(info, False, (), time.monotonic() - started)
                if (self.path / name).exists():
                    raise UsageError(f"a hash set named {name!r} already exists",
                                     "choose another --name")  # fmt: skip
                manifest = {
                    "index_format": INDEX_FORMAT,
                    "name": name,
                    "kind": kind,
                    "format": fmt.name,
                    "format_version": fmt.version,
                    "description": description,
                    "entries": stats.entries,
                    "algorithms": stats.algorithms,
                    "columns": stats.columns,
                    "source_name": source.name,
                    "source_path": str(source.resolve()),
                    "source_sha256": sha256,
                    "source_size": source.stat().st_size,
                    "imported_utc": utc_now(),
                    "imported_by": _os_user(),
                    "examkit_version": __version__,
                    "provenance": stats.provenance,
                    "category_profile": profile,
                    "malformed": stats.malformed,
                    "malformed_examples": stats.malformed_examples,
                }
                (staging / MANIFEST).write_text(
                    json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False), "utf-8"
                )
                os.rename(staging, self.path / name)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        return ImportResult(
            _info(self.path / name),
            True,
            tuple(stats.malformed_examples),
            time.monotonic() - started,
        )

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / ".lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


def detect_format(source: Path, formats: list[HashSetFormat]) -> HashSetFormat:
    """The first loader (by priority) that recognises the file's first bytes."""
    try:
        with open(source, "rb") as fh:
            head = fh.read(HEAD_BYTES)
    except OSError as exc:
        raise HashSetError(f"cannot read {source}: {exc.strerror or exc}",
                           "check the file and its permissions") from exc  # fmt: skip
    for fmt in formats:
        with suppress(Exception):
            if fmt.detect(head, source):
                return fmt
    raise HashSetError(
        f"{source.name} is in no hash-set format examkit knows",
        "give --format; 'examkit hashset formats' lists them",
    )


def _info(folder: Path) -> HashSetInfo:
    from .models import HashSetInfo

    try:
        m = json.loads((folder / MANIFEST).read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise HashSetError(
            f"hash set {folder.name} is damaged: its manifest cannot be read ({exc})",
            f"remove it ('examkit hashset remove {folder.name}') and import the file again",
        ) from exc
    return HashSetInfo(
        name=m["name"],
        kind=m["kind"],
        format=m["format"],
        entries=m["entries"],
        algorithms=m["algorithms"],
        source_name=m["source_name"],
        source_sha256=m["source_sha256"],
        source_size=m["source_size"],
        imported_utc=m["imported_utc"],
        imported_by=m.get("imported_by"),
        description=m.get("description"),
        provenance=m.get("provenance", {}),
        category_profile=m.get("category_profile", {}),
        malformed=m.get("malformed", 0),
        path=str(folder),
    )


def info_dict(info: HashSetInfo) -> dict[str, Any]:
    return asdict(info)


def _sha256(path: Path) -> str:
    import hashlib

    with open(path, "rb") as fh:  # one reused buffer: no fresh memory for every piece read
        return hashlib.file_digest(fh, "sha256").hexdigest()


class _BackgroundSha256:
    """SHA-256 of the source in a thread (hashlib releases the GIL) while it is parsed."""

    def __init__(self, path: Path) -> None:
        self._value: str | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(path,), daemon=True)
        self._thread.start()

    def _run(self, path: Path) -> None:
        try:
            self._value = _sha256(path)
        except BaseException as exc:  # reported by result()
            self._error = exc

    def result(self) -> str:
        self._thread.join()
        if self._error is not None:
            raise HashSetError(f"cannot read the source file: {self._error}", "check the file")
        assert self._value is not None
        return self._value


def _os_user() -> str | None:
    try:
        return getpass.getuser()
    except Exception:
        return None
