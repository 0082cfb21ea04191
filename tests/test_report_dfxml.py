"""The DFXML report against The Sleuth Kit's own ``fiwalk -X`` on the same fixture images.

The two are compared file for file: the set of (partition, filename, filesize,
MD5) of the regular, allocated files with content must be the same in both.
What differs by design, and is normalised here:

* fiwalk writes a bad (non-UTF-8) byte of a name as ``\\xFF``, examkit's display
  gate as ``\\xff``: the hex digits of ``\\xNN`` escapes are lower-cased.
* examkit lists each NTFS alternate data stream (and named index such as
  ``$Quota:$Q``) as a fileobject of its own, ``path:stream``; fiwalk lists only
  the default stream. Our fileobjects whose ``<id>`` (the ``file_id``) is a
  stream row in the case are left out.
* fiwalk's ``<alloc>`` is the allocation flag of the metadata entry, examkit's
  that of the name. A deleted name whose inode now belongs to another file
  (ext4 ``deleted/deleted-dir``) is an allocated regular file to fiwalk, with
  the other file's content; examkit records the deleted name as
  ``reallocated`` and does not read it. fiwalk entries whose filename our
  report lists as ``<unalloc>`` are left out.
* "With content" means a size above 0 and an MD5 (FAT volume-label entries and
  empty files are dropped on both sides).

Everything else (names, sizes, hashes, partition numbers, volume offsets and
file-system types) must agree, so a wrong path, size or digest fails the test.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import sqlite3
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Collection
from pathlib import Path
from typing import Any

import pytest

from examkit.cli.app import main
from examkit.display import DisplayPolicy
from examkit_plugins.reports.dfxml import DfxmlReport, xml_attr, xml_comment, xml_text
from tests.conftest import FIXTURES

NS = "{http://www.forensicswiki.org/wiki/Category:Digital_Forensics_XML}"
FIWALK = shutil.which("fiwalk")
needs_fiwalk = pytest.mark.skipif(
    FIWALK is None, reason="fiwalk (The Sleuth Kit) is not installed: apt-get install sleuthkit"
)
_HEX_ESCAPE = re.compile(r"\\x([0-9A-Fa-f]{2})")


def scan(image: Path, case: Path) -> None:
    code = main(["scan", str(image), "--case", str(case), "--workers", "1"])
    assert code == 0


def report(case: Path, out: Path, *extra: str) -> ET.Element:
    code = main(["report", str(case), "--format", "dfxml", "-o", str(out), *extra])
    assert code == 0
    return ET.parse(out).getroot()


def child(el: ET.Element, tag: str) -> str | None:
    found = el.find(NS + tag)
    return None if found is None else found.text


def digest(fo: ET.Element, algo: str) -> str | None:
    for h in fo.findall(NS + "hashdigest"):
        if (h.get("type") or "").lower() == algo:
            return (h.text or "").lower()
    return None


def normal_name(name: str) -> str:
    return _HEX_ESCAPE.sub(lambda m: "\\x" + m.group(1).lower(), name.lstrip("/"))


def regular_files(
    root: ET.Element,
    skip_ids: Collection[str] = (),
    skip_names: Collection[tuple[str, str]] = (),
) -> set[tuple[str, str, int, str]]:
    """(partition, filename, filesize, md5) of allocated regular files with content."""
    found = set()
    for fo in root.iter(NS + "fileobject"):
        name = normal_name(child(fo, "filename") or "")
        partition = child(fo, "partition") or ""
        md5 = digest(fo, "md5")
        size = int(child(fo, "filesize") or 0)
        if (
            child(fo, "meta_type") == "1"
            and child(fo, "alloc") == "1"
            and md5
            and size > 0
            and child(fo, "id") not in skip_ids
            and (partition, name) not in skip_names
        ):
            found.add((partition, name, size, md5))
    return found


def volumes(root: ET.Element) -> list[tuple[str | None, str | None, str | None]]:
    return [
        (v.get("offset"), child(v, "partition_offset"), child(v, "ftype_str"))
        for v in root.iter(NS + "volume")
    ]


def fiwalk(image: Path, out: Path) -> ET.Element:
    assert FIWALK is not None
    done = subprocess.run(
        [FIWALK, "-X", str(out), str(image)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return ET.parse(out).getroot()


def stream_ids(case: Path) -> set[str]:
    conn = sqlite3.connect(case)
    try:
        rows = conn.execute("SELECT file_id FROM files WHERE stream IS NOT NULL").fetchall()
    finally:
        conn.close()
    return {str(r[0]) for r in rows}


@needs_fiwalk
@pytest.mark.parametrize("image", ["fat16", "ntfs", "ext4", "mbr"])
def test_dfxml_lists_the_files_fiwalk_lists(
    fixture_images: Path, tmp_path: Path, image: str
) -> None:
    raw = fixture_images / f"{image}.raw"
    case = tmp_path / "case.sqlite"
    scan(raw, case)
    ours = report(case, tmp_path / "ours.xml")
    theirs = fiwalk(raw, tmp_path / "fiwalk.xml")

    assert ours.tag == NS + "dfxml" and ours.get("version") == "1.0"
    assert child(ours.find(NS + "creator"), "program") == "examkit"  # type: ignore[arg-type]
    images = [e.text for e in ours.iter(NS + "image_filename")]
    assert images == [str(raw)]
    assert volumes(ours) == volumes(theirs)

    unalloc_names = {
        (child(fo, "partition") or "", normal_name(child(fo, "filename") or ""))
        for fo in ours.iter(NS + "fileobject")
        if child(fo, "unalloc") == "1"
    }
    mine = regular_files(ours, skip_ids=stream_ids(case))
    reference = regular_files(theirs, skip_names=unalloc_names)
    assert len(reference) >= 25  # the comparison has something to compare
    assert sorted(reference - mine) == [] and sorted(mine - reference) == []

    # every fileobject carries what fiwalk writes, in fiwalk's order
    order = ["filename", "partition", "id", "name_type", "filesize", "unalloc", "alloc", "used",
             "orphan", "inode", "meta_type", "mtime", "ctime", "atime", "crtime", "libmagic",
             "hashdigest"]  # fmt: skip
    for fo in ours.iter(NS + "fileobject"):
        tags = [c.tag.removeprefix(NS) for c in fo]
        assert tags == sorted(tags, key=order.index), tags
        assert "name_type" in tags and "id" in tags


def flag_one(tmp_path: Path, image: str, rel: str) -> dict[str, Any]:
    """Import a known-bad md5sum set holding the planned MD5 of ``rel``; return its plan."""
    plan = json.loads((FIXTURES / "plans" / f"{image}.json").read_text())
    planned: dict[str, Any] = next(f for f in plan["files"] if f["path"] == rel)
    assert sum(f["md5"] == planned["md5"] for f in plan["files"]) == 1
    source = tmp_path / "bad.md5"
    source.write_text(f"{planned['md5']}  stand-in.bin\n")
    code = main(["hashset", "import", str(source), "--name", "bad", "--kind", "known-bad"])
    assert code == 0
    return planned


def test_dfxml_withholds_flagged_names_and_keeps_their_hashes(
    fixture_images: Path, tmp_path: Path
) -> None:
    planned = flag_one(tmp_path, "ntfs", "pictures/stripes.jpg")
    md5 = planned["md5"]
    case = tmp_path / "case.sqlite"
    scan(fixture_images / "ntfs.raw", case)
    out = tmp_path / "report.xml"
    root = report(case, out)
    text = out.read_text("utf-8")
    assert "stripes" not in text
    flagged = [fo for fo in root.iter(NS + "fileobject") if digest(fo, "md5") == md5]
    assert len(flagged) == 1
    assert child(flagged[0], "filename") == "pictures/<withheld>"
    assert digest(flagged[0], "sha1") and digest(flagged[0], "sha256")
    assert child(flagged[0], "filesize") == str(planned["size"])
    assert "circles.png" in text  # other names are there

    shown = report(case, tmp_path / "shown.xml", "--show-names")
    names = [child(fo, "filename") for fo in shown.iter(NS + "fileobject")]
    assert "pictures/stripes.jpg" in names
    conn = sqlite3.connect(case)
    try:
        actions = [r[0] for r in conn.execute("SELECT action FROM custody_log ORDER BY seq")]
    finally:
        conn.close()
    assert actions.count("names_revealed") == 1 and actions.count("report_generated") == 2


class _FakeData:
    """The parts of ReportData the DFXML report reads, with hostile names."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.gate = DisplayPolicy()
        self.show_names = False
        self.info = {"case_number": "C-1\x1b[2J"}
        self.evidence = [
            {"evidence_id": "ev\x07", "source_paths": ["/img/a\x00b.raw"], "container": "raw",
             "media_size": 1, "verification": "match"}
        ]  # fmt: skip
        self.runs: list[dict[str, Any]] = [
            {"command": "scan", "command_line": ["examkit", "scan", "x\x01"], "host": "h",
             "os_user": "u", "started_utc": "2024-01-01T00:00:00Z", "examkit_version": "0",
             "tool_versions": {"sleuthkit": "4.x", "platform": "p"}}
        ]  # fmt: skip
        self.filesystems = [{"filesystem_id": 1, "fs_type": "ext4", "offset": 0,
                             "block_size": 1024, "block_count": 8}]  # fmt: skip
        self._rows = rows

    def files(self) -> Any:
        return iter(self._rows)


def _row(file_id: int, path: str, **extra: Any) -> dict[str, Any]:
    row = {"file_id": file_id, "filesystem_id": 1, "path": path, "path_bytes": None,
           "stream": None, "name": path.rsplit("/", 1)[-1], "meta_type": "file", "size": 3,
           "allocated": 1, "state": "allocated", "status": "ok", "inode": 12,
           "mtime": "2024-03-01T12:00:00Z", "atime": None, "ctime": None, "crtime": None,
           "mime": "text/plain", "md5": "a" * 32, "sha1": "b" * 40, "sha256": "c" * 64,
           "flagged": 0}  # fmt: skip
    row.update(extra)
    return row


def test_dfxml_output_is_well_formed_whatever_the_names() -> None:
    rows = [
        _row(1, "/ctl\x01\x1b\x7f\u0085name.txt"),
        _row(2, "/markup <b>&amp;</b> ]]> \"'.txt"),
        _row(3, "/bidi\u202eexe.txt\ufffe\ud800"),
        _row(4, "/bad-\\xff.txt", path_bytes=b"/bad-\xff.txt"),
        _row(5, "/secret/hidden-name.jpg", flagged=1),
        _row(6, "/host.txt:ads\x02", stream="ads\x02", allocated=0, state="orphan"),
    ]
    buf = io.BytesIO()
    DfxmlReport().write(_FakeData(rows), buf)
    text = buf.getvalue().decode("utf-8")
    root = ET.fromstring(buf.getvalue())  # parses: no character XML forbids
    names = [child(fo, "filename") for fo in root.iter(NS + "fileobject")]
    assert names == [
        "ctl\\x01\\x1b\\x7f\\x85name.txt",
        "markup <b>&amp;</b> ]]> \"'.txt",
        "bidi\\u202eexe.txt\\ufffe\\ud800",
        "bad-\\xff.txt",
        "secret/<withheld>",
        "host.txt:ads\\x02",
    ]
    assert "hidden-name" not in text
    for bad in ("\x00", "\x01", "\x07", "\x1b", "\u202e"):
        assert bad not in text
    assert [e.text for e in root.iter(NS + "image_filename")] == ["/img/a\\x00b.raw"]
    assert child(root.find(NS + "creator"), "version") == "0"  # type: ignore[arg-type]
    orphan = list(root.iter(NS + "fileobject"))[-1]
    assert child(orphan, "unalloc") == "1" and child(orphan, "orphan") == "1"


def test_xml_helpers_escape_what_xml_cannot_hold() -> None:
    assert xml_text("a<b>&\x00\r\n") == "a&lt;b&gt;&amp;\\x00&#13;\n"
    assert xml_attr("x'\"\n") == "'x&apos;&quot;&#10;'"
    assert xml_comment("a--b-") == "<!-- a- -b -->\n"
    root = ET.fromstring(f"<r a={xml_attr(chr(0x1F) + '<')}>{xml_text(chr(0xFFFF))}</r>")
    assert root.get("a") == "\\x1f<" and root.text == "\\uffff"
