"""File systems through The Sleuth Kit: NTFS, FAT, exFAT, ext2/3/4, HFS+, ISO 9660 …

Rows follow what ``fls -r -p`` lists. Every name gives one row for the entry
itself (``stream`` NULL). On NTFS each named ``$DATA`` attribute is a row of its
own (``stream`` = its name), and so is each named index other than ``$I30``
(``attr_type`` 144, as fls lists ``$Extend/$Quota:$Q``). On HFS+ a resource
fork is a row with ``stream`` = ``rsrc`` (path ``…:RSRC``), and each extended
attribute (``ExATTR`` in ``istat``, ``attr_type`` 4354) a row with ``stream`` =
its name (path ``…:NAME``).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

import pytsk3

from examkit.display import decode_name
from examkit.evidence import MediaStream
from examkit.hashing import CHUNK_SIZE
from examkit.hookspecs import Register, hookimpl
from examkit.models import (
    ALLOCATED,
    DELETED,
    NO_CONTENT,
    NO_METADATA,
    ORPHAN,
    PENDING,
    REALLOCATED,
    FileEntry,
    FileSystemInfo,
)
from examkit.walk import FileSystemHandle, FileSystemWalker, NotRecognised
from examkit_plugins.filesystems.ntfs_mft import MIN_SIZE, large_files
from examkit_plugins.tsk_image import TSK_VERSION, enum_name, tsk_image

# TSK converts FAT's local times with the process time zone: pin it to UTC so
# results do not depend on the examiner's machine (fls -z UTC does the same).
os.environ["TZ"] = "UTC"
time.tzset()

NTFS_DATA = 128
NTFS_IDXROOT = 144
HFS_DATA = 4352
HFS_RSRC = 4353
HFS_EXT_ATTR = 4354
DEFAULT_TYPES = (1, HFS_DATA)  # TSK_FS_ATTR_TYPE_DEFAULT, HFS data fork
MAX_EXPANSIONS = 4  # a directory reached by more paths than this is corruption
EARLY_SIZE = MIN_SIZE  # NTFS files this large are listed first (TskFileSystem.entries)

_META_TYPES = {
    1: "file", 2: "dir", 3: "fifo", 4: "chr", 5: "blk", 6: "link",
    7: "shadow", 8: "socket", 9: "whiteout", 10: "virtual", 11: "virtual_dir",
}  # fmt: skip
_NAME_TYPES = {
    0: "unknown", 1: "fifo", 2: "chr", 3: "dir", 4: "blk", 5: "file", 6: "link",
    7: "socket", 8: "shadow", 9: "whiteout", 10: "virtual", 11: "virtual_dir",
}  # fmt: skip
_CONTENT_TYPES = ("file", "virtual")
_DIR_TYPES = ("dir", "virtual_dir")
ORPHAN_PREFIX = b"/$OrphanFiles/"
_NAME_UNALLOC = int(pytsk3.TSK_FS_NAME_FLAG_UNALLOC)
_META_ALLOC = int(pytsk3.TSK_FS_META_FLAG_ALLOC)


def _kind(meta: Any, name: Any) -> str:
    """An entry's type: its metadata's, else its name entry's."""
    if meta is not None:
        return _META_TYPES.get(int(meta.type), "unknown")
    return _NAME_TYPES.get(int(name.type), "unknown")


@lru_cache(maxsize=4096)
def utc(seconds: int, nano: int = 0) -> str | None:
    """TSK time (seconds since 1970, nanoseconds) as UTC ISO 8601 with Z (years 1 to 9999,
    four digits); None for 0 or a time out of that range. Four times per entry, so built
    from ``time.gmtime`` (half the cost of ``datetime.strftime``), and the last few
    thousand kept: an entry's times are often the same, and so are its neighbours'."""
    if not seconds:
        return None
    try:
        t = time.gmtime(seconds)
    except (OverflowError, OSError, ValueError):
        return None
    if not 1 <= t.tm_year <= 9999:
        return None
    stamp = "%04d-%02d-%02dT%02d:%02d:%02d" % t[:6]  # noqa: UP031  (the fastest form)
    if nano:
        stamp += ("." + f"{nano:09d}").rstrip("0")
    return stamp + "Z"


def _attr_name(attr: Any) -> str | None:
    raw = attr.info.name
    if not raw:
        return None
    return raw.decode("utf-8", "backslashreplace")


class TskFileSystem(FileSystemHandle):
    def __init__(self, fs: Any, offset: int, fs_type: str) -> None:
        self._fs = fs
        self.info = FileSystemInfo(
            walker="tsk",
            fs_type=fs_type,
            offset=offset,
            block_size=int(fs.info.block_size),
            block_count=int(fs.info.block_count),
        )
        self._ntfs = fs_type == "ntfs"

    # -- listing ---------------------------------------------------------
    def entries(self) -> Iterator[FileEntry]:
        seq = 0
        root_inum = int(self._fs.info.root_inum)
        # NTFS: the largest files first (their digests are a scan's longest jobs), each
        # left out when the walk reaches it again (see examkit_plugins.filesystems.ntfs_mft)
        early: set[tuple[bytes, int]] = set()
        for path, f in self._large_first(root_inum) if self._ntfs else ():
            for row in self._rows(f, path, self._type(f), seq, None):
                yield row
                seq += 1
            early.add((path, int(f.info.meta.addr)))
        expansions: Counter[int] = Counter({root_inum: 1})
        stack: list[tuple[Iterator[Any], bytes, frozenset[int]]] = [
            (iter(self._fs.open_dir(inode=root_inum)), b"", frozenset({root_inum}))
        ]
        while stack:
            entries, parent, ancestors = stack[-1]
            try:
                f = next(entries)
            except StopIteration:
                stack.pop()
                continue
            except OSError:
                stack.pop()  # a directory that cannot be read further; its row says so
                continue
            info = f.info
            name_info = info.name
            raw = name_info.name or b""
            if raw in (b".", b".."):
                continue
            path = parent + b"/" + raw
            meta = info.meta
            if meta is None and int(name_info.meta_addr):
                f = self._with_meta(f)
                info = f.info
                meta = info.meta
            if early and meta is not None and (path, int(meta.addr)) in early:
                continue  # listed first
            child: Iterator[Any] | None = None
            note: str | None = None
            kind = _kind(meta, name_info)
            if kind in _DIR_TYPES and meta is not None:
                inode = int(meta.addr)
                if inode in ancestors:
                    note = f"directory loop: inode {inode} is its own ancestor; not descended"
                elif expansions[inode] >= MAX_EXPANSIONS:
                    note = f"inode {inode} reached by too many paths; not descended"
                else:
                    try:
                        child = iter(f.as_directory())
                        expansions[inode] += 1
                    except OSError as exc:
                        note = f"cannot list directory: {_first_line(exc)}"
            for row in self._rows(f, path, kind, seq, note, info):
                yield row
                seq += 1
            if child is not None:
                stack.append((child, path, ancestors | {int(meta.addr)}))

    def _large_first(self, root: int) -> Iterator[tuple[bytes, Any]]:
        """The largest files (``ntfs_mft.large_files``), each with its path and the name
        entry the walk would reach it by; fewer, or none, on any error."""
        seen: dict[int, dict[int, Any]] = {}  # per folder: its entries read so far, by inode
        unread: dict[int, Iterator[Any]] = {}

        def entry(folder: int, inode: int) -> Any:
            names = seen.setdefault(folder, {})
            if folder not in unread:
                unread[folder] = iter(self._fs.open_dir(inode=folder))
            while inode not in names:
                f = next(unread[folder], None)
                if f is None:
                    return None
                name = f.info.name
                # a live name (a deleted one may point to the record since reused)
                live = not int(name.flags) & int(pytsk3.TSK_FS_NAME_FLAG_UNALLOC)
                if live and f.info.meta is not None and (name.name or b"") not in (b".", b".."):
                    names.setdefault(int(name.meta_addr), f)
            return names[inode]

        try:
            for inode, folders in large_files(self._fs, EARLY_SIZE):
                path, folder, f = b"", root, None
                for step in (*folders, inode):
                    f = entry(folder, step)
                    if f is None:
                        break
                    path, folder = path + b"/" + (f.info.name.name or b""), step
                if f is not None and self._type(f) in _CONTENT_TYPES:
                    yield path, f
        except OSError:
            return

    @staticmethod
    def _type(f: Any) -> str:
        info = f.info
        return _kind(info.meta, info.name)

    def _rows(
        self, f: Any, path: bytes, kind: str, seq: int, note: str | None, info: Any = None
    ) -> list[FileEntry]:
        """The rows of one entry: its default stream (or content-less row) and its other
        streams. A list, built with positional fields: once per entry of a scan. ``info``:
        ``f.info``, if the caller has it."""
        if info is None:
            info = f.info
        name_info, meta = info.name, info.meta
        name, name_bytes = decode_name(name_info.name or b"")
        path_text, path_bytes = decode_name(path)
        if path.startswith(ORPHAN_PREFIX):
            state = ORPHAN
        elif int(name_info.flags) & _NAME_UNALLOC:
            state = DELETED
        else:
            state = ALLOCATED
        if meta is None or (int(meta.addr) == 0 and state == DELETED):
            return [
                FileEntry(
                    seq, path_text, name, None, int(name_info.meta_addr) or None, None, None,
                    kind, 0, state, NO_METADATA, path_bytes, name_bytes, None, None, None, None,
                    note or "deleted name without a metadata entry",
                )
            ]  # fmt: skip
        inode = int(meta.addr)
        mtime = utc(meta.mtime, getattr(meta, "mtime_nano", 0))
        atime = utc(meta.atime, getattr(meta, "atime_nano", 0))
        ctime = utc(meta.ctime, getattr(meta, "ctime_nano", 0))
        crtime = utc(meta.crtime, getattr(meta, "crtime_nano", 0))
        realloc = state == DELETED and bool(int(meta.flags) & _META_ALLOC)
        try:
            attrs = list(f)
        except OSError as exc:
            attrs = []
            note = note or f"cannot list attributes: {_first_line(exc)}"
        default, streams = self._pick_attrs(attrs)
        realloc_note = "metadata entry now belongs to another file" if realloc else None
        content = REALLOCATED if realloc else PENDING  # status of a row with content to read
        if kind not in _CONTENT_TYPES:
            size, status, error = int(meta.size), REALLOCATED if realloc else NO_CONTENT, None
            attr_type = attr_id = None
        elif default is not None:
            attr_type, attr_id = int(default.info.type), int(default.info.id)
            size, status, error = int(default.info.size), content, None
        elif self._ntfs:
            attr_type = attr_id = None
            size, status = int(meta.size), REALLOCATED if realloc else NO_CONTENT
            error = "no unnamed $DATA attribute"
        else:
            attr_type = attr_id = None
            size, status, error = int(meta.size), content, None
        rows = [
            FileEntry(
                seq, path_text, name, None, inode, attr_type, attr_id, kind, size, state, status,
                path_bytes, name_bytes, mtime, atime, ctime, crtime,
                note or realloc_note or error if kind in _CONTENT_TYPES else note or realloc_note,
            )
        ]  # fmt: skip
        for n, attr in enumerate(streams, start=1):  # directories' named streams too
            stream_name = _attr_name(attr) or ""
            # exact bytes of "path:stream" when either part is not UTF-8 (else NULL)
            full = (path_bytes or path_text.encode()) + b":" + (attr.info.name or b"rsrc")
            rows.append(
                FileEntry(
                    seq + n, f"{path_text}:{stream_name or 'rsrc'}", name,
                    stream_name if int(attr.info.type) != HFS_RSRC else "rsrc", inode,
                    int(attr.info.type), int(attr.info.id), kind, int(attr.info.size), state,
                    content, decode_name(full)[1], name_bytes, mtime, atime, ctime, crtime,
                    realloc_note,
                )
            )  # fmt: skip
        return rows

    def _with_meta(self, f: Any) -> Any:
        """Metadata a directory listing did not load (NTFS orphans), opened by inode.

        The name (and its deleted flag) stays the listing's; only the metadata
        and attributes come from the inode.
        """
        try:
            opened = self._fs.open_meta(inode=int(f.info.name.meta_addr))
        except OSError:
            return f
        return _Joined(f.info.name, opened)

    def _pick_attrs(self, attrs: list[Any]) -> tuple[Any | None, list[Any]]:
        """The attribute holding the default content, and the extra streams."""
        default = None
        streams = []
        for attr in attrs:
            atype = int(attr.info.type)
            named = bool(attr.info.name)
            if self._ntfs:
                if atype == NTFS_DATA and not named and default is None:
                    default = attr
                elif named and (
                    atype == NTFS_DATA or (atype == NTFS_IDXROOT and attr.info.name != b"$I30")
                ):
                    streams.append(attr)
            elif atype in DEFAULT_TYPES and default is None:
                default = attr
            elif atype in (HFS_RSRC, HFS_EXT_ATTR):
                streams.append(attr)
        return default, streams

    # -- reading ---------------------------------------------------------
    def read(
        self, inode: int, attr_type: int | None, attr_id: int | None, size: int
    ) -> Iterator[bytes]:
        f = self._fs.open_meta(inode=inode)
        offset = 0
        while offset < size:
            want = min(CHUNK_SIZE, size - offset)
            if attr_type is None:
                data = f.read_random(offset, want)
            else:
                data = f.read_random(offset, want, attr_type, attr_id)
            if not data:
                return
            offset += len(data)
            yield data

    def data_offset(self, inode: int, attr_type: int | None, attr_id: int | None) -> int | None:
        for attr in self._fs.open_meta(inode=inode):
            info = attr.info
            if attr_type is None:
                if int(info.type) not in (NTFS_DATA, *DEFAULT_TYPES) or info.name:
                    continue
            elif (int(info.type), int(info.id)) != (attr_type, attr_id):
                continue
            if not int(info.flags) & pytsk3.TSK_FS_ATTR_NONRES:
                return None
            for run in attr:
                return int(run.addr) * self.info.block_size
            return None
        return None


class _Joined:
    """A listing's name joined with metadata and attributes opened by inode."""

    def __init__(self, name: Any, opened: Any) -> None:
        self._opened = opened
        self.info = _JoinedInfo(name, opened.info.meta)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._opened)

    def as_directory(self) -> Any:
        return self._opened.as_directory()


class _JoinedInfo:
    def __init__(self, name: Any, meta: Any) -> None:
        self.name = name
        self.meta = meta


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else type(exc).__name__


class TskWalker(FileSystemWalker):
    name = "tsk"
    version = f"pytsk3 (TSK {TSK_VERSION})"
    description = "The Sleuth Kit: NTFS, FAT12/16/32, exFAT, ext2/3/4, HFS+, ISO 9660, UFS"
    priority = 50

    def open(self, media: MediaStream, offset: int, length: int) -> FileSystemHandle:
        img = tsk_image(media)
        try:
            fs = pytsk3.FS_Info(img, offset=offset)
        except OSError as exc:
            fs = self._retry_explicit(media, img, offset)
            if fs is None:
                raise NotRecognised(_first_line(exc)) from exc
        return TskFileSystem(fs, offset, enum_name(fs.info.ftype, "TSK_FS_TYPE_"))

    @staticmethod
    def _retry_explicit(media: MediaStream, img: Any, offset: int) -> Any | None:
        """FAT32 volumes below the spec's cluster count defeat TSK's detection."""
        head = media.read(offset, 512)
        if len(head) == 512 and head[82:90] == b"FAT32   " and head[510:512] == b"\x55\xaa":
            try:
                return pytsk3.FS_Info(img, offset=offset, type=pytsk3.TSK_FS_TYPE_FAT32)
            except OSError:
                return None
        return None


@hookimpl
def register_filesystems(register: Register) -> None:
    register(TskWalker())
