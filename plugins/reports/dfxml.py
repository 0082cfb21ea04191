"""DFXML: Digital Forensics XML laid out the way The Sleuth Kit's ``fiwalk -X`` writes it.

One ``<volume>`` per file system (``partition_offset``, ``block_size``,
``ftype``/``ftype_str`` …) holding one ``<fileobject>`` per ``files`` row, with
the elements, their order and their encodings of ``fiwalk`` (TSK 4.x) and the
DFXML 1.x schema: paths relative to the file system root without a leading
``/``, ``name_type`` letters and numeric TSK ``meta_type``, ``alloc``/``unalloc``,
FAT and exFAT times without a zone and with their precision (``prec``), other
times UTC with ``Z``, ``hashdigest`` elements. DFXML tools (``idifference``,
``dfxml`` Python objects, BitCurator) read it like ``fiwalk`` output.

What examkit records and ``fiwalk`` does not: NTFS alternate data streams are
fileobjects of their own, named ``path:stream`` as ``fls`` names them; SHA-256
is given besides MD5 and SHA-1; ``<id>`` is the row's ``file_id`` in the case
(so a fileobject can be looked up in the case database); ``<libmagic>`` holds
the MIME type examkit found. What ``fiwalk`` records and examkit does not keep
(``mode``, ``uid``, byte runs …) is left out. An archive member (outside any
file system, so at the top level) has ``<parent_object><id>`` naming its archive.

The document is written as it is read (one fileobject at a time), so a case
of millions of files needs no more memory than a small one. Every string from
evidence goes through the display gate (control characters shown as visible
escapes) and then through a filter for characters XML 1.0 cannot hold; names
of flagged files are withheld (``<withheld>``) unless the examiner asked.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable
from typing import IO, Any

from examkit import __version__
from examkit.display import safe_text
from examkit.hookspecs import Register, hookimpl
from examkit.reporting import ReportData, ReportFormat, exact_path

NAMESPACE = "http://www.forensicswiki.org/wiki/Category:Digital_Forensics_XML"
DC_NAMESPACE = "http://purl.org/dc/elements/1.1/"
XSI_NAMESPACE = "http://www.w3.org/2001/XMLSchema-instance"

# TSK_FS_META_TYPE_ENUM values (DFXML <meta_type>) and TSK name-type letters (<name_type>)
META_TYPES = {
    "file": 1, "dir": 2, "fifo": 3, "chr": 4, "blk": 5, "link": 6, "shadow": 7, "socket": 8,
    "whiteout": 9, "virtual": 10, "virtual_dir": 11,
}  # fmt: skip
NAME_TYPES = {
    "file": "r", "dir": "d", "fifo": "p", "chr": "c", "blk": "b", "link": "l", "shadow": "h",
    "socket": "s", "whiteout": "w", "virtual": "v", "virtual_dir": "V",
}  # fmt: skip
# TSK_FS_TYPE_ENUM values (DFXML <ftype>), by examkit's fs_type
FS_TYPES = {
    "ntfs": 0x1, "fat12": 0x2, "fat16": 0x4, "fat32": 0x8, "exfat": 0xA, "ffs1": 0x10,
    "ffs1b": 0x20, "ffs2": 0x40, "ext2": 0x80, "ext3": 0x100, "swap": 0x200, "raw": 0x400,
    "iso9660": 0x800, "hfs": 0x1000, "ext4": 0x2000, "yaffs2": 0x4000, "apfs": 0x10000,
}  # fmt: skip
# fiwalk writes FAT and exFAT times as stored (local, no zone) with their precision in seconds
FAT_TYPES = frozenset({"fat12", "fat16", "fat32", "exfat"})
FAT_PRECISION = {"mtime": 2, "ctime": 2, "atime": 86400, "crtime": 2}
TIMES = ("mtime", "ctime", "atime", "crtime")  # fiwalk's (and the schema's) order
DIGESTS = ("md5", "sha1", "sha256")

# Characters XML 1.0 cannot hold at all (even as character references)
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def xml_text(value: object) -> str:
    """``value`` as XML character data: no character XML forbids, markup escaped."""
    if isinstance(value, int):
        return str(value)
    text = _NOT_XML.sub(_visible, str(value))
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("\r", "&#13;")  # a raw CR would be read back as a newline
    )


def xml_attr(value: object) -> str:
    """``value`` quoted as an XML attribute value (single quotes, as fiwalk writes them)."""
    text = xml_text(value).replace("'", "&apos;").replace('"', "&quot;")
    return "'" + text.replace("\n", "&#10;").replace("\t", "&#9;") + "'"


def xml_comment(value: object) -> str:
    """A comment holding ``value`` (never ``--``, never ending in ``-``)."""
    text = _NOT_XML.sub(_visible, str(value))
    while "--" in text:
        text = text.replace("--", "- -")
    return f"<!-- {text.rstrip('-')} -->\n"


def leaf(indent: str, tag: str, value: object, attrs: str = "") -> str:
    return f"{indent}<{tag}{attrs}>{xml_text(value)}</{tag}>\n"


def dfxml_path(path: str) -> str:
    """A path as fiwalk writes it: relative to the file-system root (no leading ``/``)."""
    return path[1:] if path.startswith("/") else path


class DfxmlReport(ReportFormat):
    name = "dfxml"
    description = "DFXML (fiwalk layout): volumes, files, times, hashes (flagged names withheld)"
    version = "1"
    extension = ".xml"

    def write(self, data: ReportData, out: IO[bytes]) -> None:
        def emit(text: str) -> None:
            out.write(text.encode("utf-8"))

        emit(self._head(data))
        filesystems = {fs["filesystem_id"]: fs for fs in data.filesystems if fs.get("fs_type")}
        partitions = {fs_id: n for n, fs_id in enumerate(sorted(filesystems), start=1)}
        # file systems are listed one after the other, so file_id order groups their rows
        empty = sorted(filesystems)  # not yet written, in order: written empty when passed
        current: Any = None  # filesystem_id of the open <volume>
        open_volume = False
        for row in data.files():
            fs_id = row.get("filesystem_id")
            if not open_volume or fs_id != current:
                if open_volume:
                    emit(self._volume_end())
                    open_volume = False
                current = fs_id
                fs = filesystems.get(fs_id)
                if fs is not None:  # a row outside any known file system stays at the top level
                    while empty and empty[0] < fs_id:
                        emit(self._volume_start(filesystems[empty[0]]) + self._volume_end())
                        empty.pop(0)
                    if fs_id in empty:
                        empty.remove(fs_id)
                    emit(self._volume_start(fs))
                    open_volume = True
            fs = filesystems.get(fs_id)
            emit(
                self._fileobject(
                    data,
                    row,
                    partitions.get(fs_id),
                    fs["fs_type"] if fs else None,
                    "    " if open_volume else "  ",
                )
            )
        if open_volume:
            emit(self._volume_end())
        for fs_id in empty:  # a file system with no entries still shows
            emit(self._volume_start(filesystems[fs_id]) + self._volume_end())
        emit("</dfxml>\n")

    # -- document head ------------------------------------------------------
    def _head(self, data: ReportData) -> str:
        gate = data.gate
        parts = [
            "<?xml version='1.0' encoding='UTF-8'?>\n",
            f"<dfxml\n  xmlns={xml_attr(NAMESPACE)}\n  xmlns:xsi={xml_attr(XSI_NAMESPACE)}\n"
            f"  xmlns:dc={xml_attr(DC_NAMESPACE)}\n  version='1.0'>\n",
            "  <metadata>\n",
            leaf("    ", "dc:type", "Disk Image"),
            "  </metadata>\n",
            self._creator(data),
            "  <source>\n",
        ]
        for ev in data.evidence:
            for path in ev.get("source_paths") or []:
                parts.append(leaf("    ", "image_filename", gate.text(str(path))))
        parts.append("  </source>\n")
        info = data.info
        parts.append(
            xml_comment(
                f"examkit case {gate.text(info.get('case_number'))}: report format dfxml"
                f" {self.version}, examkit {__version__}; "
                + (
                    "names of flagged files shown (the examiner asked; logged)"
                    if data.show_names
                    else "names of flagged files withheld as <withheld>"
                )
            )
        )
        for ev in data.evidence:
            hashes = ", ".join(
                f"{algo} {ev[f'media_{algo}']}" for algo in DIGESTS if ev.get(f"media_{algo}")
            )
            parts.append(
                xml_comment(
                    f"evidence {gate.text(ev['evidence_id'])}: container"
                    f" {gate.text(ev.get('container'))}, {ev.get('media_size')} bytes"
                    + (f", media {hashes}" if hashes else "")
                    + f", verification {gate.text(ev.get('verification'))}"
                )
            )
        return "".join(parts)

    @staticmethod
    def _creator(data: ReportData) -> str:
        gate = data.gate
        scans = [r for r in data.runs if r.get("command") == "scan"]
        run = scans[-1] if scans else (data.runs[-1] if data.runs else None)
        parts = ["  <creator version='1.0'>\n", leaf("    ", "program", "examkit")]
        parts.append(leaf("    ", "version", (run or {}).get("examkit_version") or __version__))
        tools = (run or {}).get("tool_versions")
        libraries = [
            f"      <library name={xml_attr(gate.text(name))}"
            f" version={xml_attr(gate.text(str(version)))}/>\n"
            for name, version in sorted(tools.items() if isinstance(tools, dict) else [])
            if name != "platform"
        ]
        if libraries:
            parts += ["    <build_environment>\n", *libraries, "    </build_environment>\n"]
        if run is not None:
            env: list[str] = []
            if run.get("host"):
                env.append(leaf("      ", "host", gate.text(run["host"])))
            argv = run.get("command_line")
            if isinstance(argv, list) and argv:
                env.append(
                    leaf("      ", "command_line", gate.text(shlex.join(str(a) for a in argv)))
                )
            if run.get("os_user"):
                env.append(leaf("      ", "username", gate.text(run["os_user"])))
            if run.get("started_utc"):
                env.append(leaf("      ", "start_time", gate.text(run["started_utc"])))
            if env:
                parts += ["    <execution_environment>\n", *env, "    </execution_environment>\n"]
        parts.append("  </creator>\n")
        return "".join(parts)

    # -- volumes -------------------------------------------------------------
    @staticmethod
    def _volume_start(fs: dict[str, Any]) -> str:
        offset = int(fs.get("offset") or 0)
        parts = [
            xml_comment(f"fs start: {offset}; evidence {safe_text(fs.get('evidence_id'))}"),
            f"  <volume offset={xml_attr(offset)}>\n",
            leaf("    ", "partition_offset", offset),
        ]
        if fs.get("block_size"):
            parts.append(leaf("    ", "block_size", int(fs["block_size"])))
        fs_type = str(fs["fs_type"])
        if fs_type in FS_TYPES:
            parts.append(leaf("    ", "ftype", FS_TYPES[fs_type]))
        parts.append(leaf("    ", "ftype_str", fs_type))
        count = fs.get("block_count")
        if count:
            parts.append(leaf("    ", "block_count", int(count)))
            parts.append(leaf("    ", "first_block", 0))
            parts.append(leaf("    ", "last_block", int(count) - 1))
        return "".join(parts)

    @staticmethod
    def _volume_end() -> str:
        return "  </volume>\n" + xml_comment("end of volume")

    # -- files -----------------------------------------------------------------
    @staticmethod
    def _fileobject(
        data: ReportData,
        row: dict[str, Any],
        partition: int | None,
        fs_type: str | None,
        indent: str,
    ) -> str:
        inner = indent + "  "
        flagged = bool(row.get("flagged"))
        path = data.gate.path(exact_path(row), flagged)
        parts = [f"{indent}<fileobject>\n", leaf(inner, "filename", dfxml_path(path))]
        if partition is not None:
            parts.append(leaf(inner, "partition", partition))
        parts.append(leaf(inner, "id", row["file_id"]))
        kind = row.get("meta_type") or ""
        parts.append(leaf(inner, "name_type", NAME_TYPES.get(kind, "-")))
        has_meta = row.get("status") != "no_metadata"
        if has_meta and row.get("size") is not None:
            parts.append(leaf(inner, "filesize", int(row["size"])))
        parts.append(leaf(inner, "alloc" if row.get("allocated") else "unalloc", 1))
        if has_meta:
            parts.append(leaf(inner, "used", 1))
        if row.get("state") == "orphan":
            parts.append(leaf(inner, "orphan", 1))
        if row.get("parent_file_id") is not None:  # an archive member: the archive's <id>
            parts.append(f"{inner}<parent_object>\n")
            parts.append(leaf(inner + "  ", "id", int(row["parent_file_id"])))
            parts.append(f"{inner}</parent_object>\n")
        if row.get("inode") is not None:
            parts.append(leaf(inner, "inode", int(row["inode"])))
        if has_meta and kind in META_TYPES:
            parts.append(leaf(inner, "meta_type", META_TYPES[kind]))
        parts.extend(_times(inner, row, fs_type))
        if row.get("mime"):
            parts.append(leaf(inner, "libmagic", data.gate.text(row["mime"])))
        for algo in DIGESTS:
            digest = row.get(algo)
            if digest:
                parts.append(leaf(inner, "hashdigest", digest, f" type={xml_attr(algo)}"))
        parts.append(f"{indent}</fileobject>\n")
        return "".join(parts)


def _times(indent: str, row: dict[str, Any], fs_type: str | None) -> Iterable[str]:
    fat = fs_type in FAT_TYPES
    for field in TIMES:
        value = row.get(field)
        if not value:
            continue
        text = str(value)
        if fat:  # stored without a zone on disk: written as fiwalk writes them
            yield leaf(
                indent, field, text.removesuffix("Z"), f" prec={xml_attr(FAT_PRECISION[field])}"
            )
        else:
            yield leaf(indent, field, text)


@hookimpl
def register_report_formats(register: Register) -> None:
    register(DfxmlReport())
