"""XFS through libfsxfs (pyfsxfs): The Sleuth Kit has no XFS support.

Rows follow the TSK walker's: one row per name below the root (the root itself
is not a row, as ``fls`` does not list it), paths absolute and '/'-separated,
``inode`` the XFS inode number, times in the same UTC ISO 8601 form.
libfsxfs lists only the names in allocated directory entries, so every row is
``allocated``: deleted XFS entries are not recovered. Regular files are read
in full (``attr_type`` 1, ``attr_id`` 0: XFS has one data fork); links,
directories and devices are recorded without content. Extended attributes are
not recorded as streams.

libyal bindings read the volume through ``examkit.layers.RegionFile``.
"""

from __future__ import annotations

import contextlib
import stat
import struct
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pyfsxfs

from examkit.display import decode_name
from examkit.evidence import MediaStream
from examkit.hashing import CHUNK_SIZE
from examkit.hookspecs import Register, hookimpl
from examkit.layers import RegionFile
from examkit.models import ALLOCATED, NO_CONTENT, PENDING, FileEntry, FileSystemInfo
from examkit.walk import FileSystemHandle, FileSystemWalker, NotRecognised
from examkit_plugins._libyal import libyal_cause
from examkit_plugins.filesystems.tsk import MAX_EXPANSIONS, utc

XFS_MAGIC = b"XFSB"
DEFAULT_ATTR = 1  # TSK_FS_ATTR_TYPE_DEFAULT, as the TSK walker records ext2/3/4 data

_MODE_TYPES = {
    stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "link", stat.S_IFCHR: "chr",
    stat.S_IFBLK: "blk", stat.S_IFIFO: "fifo", stat.S_IFSOCK: "socket",
}  # fmt: skip


def mode_type(mode: int | None) -> str:
    """``file`` / ``dir`` / ``link`` ... from a POSIX file mode."""
    if mode is None:
        return "unknown"
    return _MODE_TYPES.get(stat.S_IFMT(mode), "unknown")


def ns_utc(entry: Any, getter: str) -> str | None:
    """A libyal ``get_*_time_as_integer`` value (ns since 1970) as the TSK walker's UTC text."""
    try:
        value = getattr(entry, getter)()
    except (OSError, AttributeError):
        return None
    if not value:
        return None
    seconds, nano = divmod(int(value), 1_000_000_000)
    stamp: str | None = utc(seconds, nano)
    return stamp


def entry_times(entry: Any) -> dict[str, str | None]:
    return {
        "mtime": ns_utc(entry, "get_modification_time_as_integer"),
        "atime": ns_utc(entry, "get_access_time_as_integer"),
        "ctime": ns_utc(entry, "get_inode_change_time_as_integer"),
        "crtime": ns_utc(entry, "get_creation_time_as_integer"),
    }


def read_chunks(reader: Any, size: int) -> Iterator[bytes]:
    """``size`` bytes from a libyal object with ``read_buffer_at_offset``, in chunks."""
    offset = 0
    while offset < size:
        data = reader.read_buffer_at_offset(min(CHUNK_SIZE, size - offset), offset)
        if not data:
            return
        offset += len(data)
        yield data


def walk_tree(
    root: Any, root_id: int, top: bytes, ident: Callable[[Any], int]
) -> Iterator[tuple[Any, bytes, bytes, int, str, str | None]]:
    """Depth first below a libyal directory: ``(entry, name, path, id, kind, note)`` for each
    name (bytes as stored). A directory that is its own ancestor, or is reached by more than
    ``MAX_EXPANSIONS`` paths, is yielded with a note and not descended; a directory that
    cannot be read further is left."""
    expansions: Counter[int] = Counter({root_id: 1})
    stack: list[tuple[Iterator[Any], bytes, frozenset[int]]] = [
        (iter(root.sub_file_entries), top, frozenset({root_id}))
    ]
    while stack:
        children, parent, ancestors = stack[-1]
        try:
            entry = next(children)
        except StopIteration:
            stack.pop()
            continue
        except OSError:
            stack.pop()  # a directory that cannot be read further
            continue
        raw = (entry.get_name() or "").encode("utf-8", "surrogateescape")
        path_raw = parent + b"/" + raw
        number = ident(entry)
        kind = mode_type(entry.get_file_mode())
        note: str | None = None
        descend = False
        if kind == "dir":
            if number in ancestors:
                note = f"directory loop: inode {number} is its own ancestor; not descended"
            elif expansions[number] >= MAX_EXPANSIONS:
                note = f"inode {number} reached by too many paths; not descended"
            else:
                expansions[number] += 1
                descend = True
        yield entry, raw, path_raw, number, kind, note
        if descend:
            stack.append((iter(entry.sub_file_entries), path_raw, ancestors | {number}))


class XfsFileSystem(FileSystemHandle):
    def __init__(self, volume: Any, file: RegionFile, offset: int, head: bytes) -> None:
        self._volume = volume
        self._file = file
        block_size, blocks = struct.unpack(">IQ", head[4:16])
        self.info = FileSystemInfo(
            walker="xfs",
            fs_type="xfs",
            offset=offset,
            block_size=block_size,
            block_count=blocks,
            label=volume.get_label() or None,
        )

    def entries(self) -> Iterator[FileEntry]:
        root = self._volume.get_root_directory()
        rows = walk_tree(root, int(root.get_inode_number()), b"",
                         lambda entry: int(entry.get_inode_number()))  # fmt: skip
        for seq, (entry, raw, path_raw, inode, kind, note) in enumerate(rows):
            name, name_bytes = decode_name(raw)
            path, path_bytes = decode_name(path_raw)
            content = kind == "file"
            yield FileEntry(
                seq=seq, path=path, name=name, stream=None, inode=inode,
                attr_type=DEFAULT_ATTR if content else None, attr_id=0 if content else None,
                meta_type=kind, size=int(entry.get_size() or 0), state=ALLOCATED,
                status=PENDING if content else NO_CONTENT, name_bytes=name_bytes,
                path_bytes=path_bytes, error=note, **entry_times(entry),
            )  # fmt: skip

    def read(
        self, inode: int, attr_type: int | None, attr_id: int | None, size: int
    ) -> Iterator[bytes]:
        yield from read_chunks(self._volume.get_file_entry_by_inode(inode), size)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._volume.close()


class XfsWalker(FileSystemWalker):
    name = "xfs"
    version = f"pyfsxfs {pyfsxfs.get_version()}"
    description = "XFS (libfsxfs): allocated entries only"
    priority = 40  # after TSK, which is tried first

    def open(self, media: MediaStream, offset: int, length: int) -> FileSystemHandle:
        head = media.read(offset, 512)
        if len(head) < 16 or head[:4] != XFS_MAGIC:
            raise NotRecognised("no XFS superblock signature")
        file = RegionFile(media, offset, length)
        volume = pyfsxfs.volume()
        try:
            volume.open_file_object(file)
        except OSError as exc:
            raise NotRecognised(f"libfsxfs cannot open the volume: {libyal_cause(exc)}") from exc
        return XfsFileSystem(volume, file, offset, head)


@hookimpl
def register_filesystems(register: Register) -> None:
    register(XfsWalker())
