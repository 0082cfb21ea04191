"""Independent oracles: parse The Sleuth Kit's fls/mmls output and icat hashes."""

from __future__ import annotations

import hashlib
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

FLS_LINE = re.compile(
    rb"^(?P<ntype>\S)/(?P<mtype>\S) (?P<deleted>\* )?(?P<addr>\d+)(?:-(?P<atype>\d+)-(?P<aid>\d+))?"
    rb"(?P<realloc>\(realloc\))?:\t(?P<path>.*)$"
)


@dataclass(frozen=True)
class FlsEntry:
    ntype: str
    mtype: str
    deleted: bool
    addr: int
    attr_type: int | None
    attr_id: int | None
    path: str  # '/' + fls path, raw bytes kept via surrogateescape

    @property
    def key(self) -> tuple[str, int | None]:
        return (self.path, self.addr or None)


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def parse_fls(data: bytes) -> list[FlsEntry]:
    out = []
    for line in data.split(b"\n"):
        m = FLS_LINE.match(line)
        if not m:
            continue
        path = b"/" + m["path"]
        # fls lists a directory's stream a second time through '.': 'dir/.:ads'
        path = path.replace(b"/.:", b":")
        out.append(
            FlsEntry(
                ntype=m["ntype"].decode(),
                mtype=m["mtype"].decode(),
                deleted=bool(m["deleted"]),
                addr=int(m["addr"]),
                attr_type=int(m["atype"]) if m["atype"] else None,
                attr_id=int(m["aid"]) if m["aid"] else None,
                path=_decode(path),
            )
        )
    return out


def run_fls(
    image: Path, offset_sectors: int | None = None, fstype: str | None = None
) -> list[FlsEntry]:
    cmd = ["fls", "-r", "-p"]
    if offset_sectors is not None:
        cmd += ["-o", str(offset_sectors)]
    if fstype:
        cmd += ["-f", fstype]
    done = subprocess.run([*cmd, str(image)], capture_output=True, check=True)
    return parse_fls(done.stdout)


def icat(image: Path, addr: str, offset_sectors: int | None = None) -> bytes:
    cmd = ["icat"]
    if offset_sectors is not None:
        cmd += ["-o", str(offset_sectors)]
    return subprocess.run([*cmd, str(image), addr], capture_output=True, check=True).stdout


@dataclass(frozen=True)
class OracleHash:
    meta_addr: str
    attr: str
    status: str
    path: str
    size: int
    md5: str
    sha1: str
    sha256: str
    error: str


def parse_hashes(path: Path) -> list[OracleHash]:
    out = []
    for raw in path.read_bytes().split(b"\n"):
        if not raw or raw.startswith(b"#") or raw.startswith(b"meta_addr\t"):
            continue
        cols = raw.split(b"\t")
        cols += [b""] * (9 - len(cols))
        out.append(
            OracleHash(
                meta_addr=cols[0].decode(),
                attr=cols[1].decode(),
                status=cols[2].decode(),
                path="/" + _decode(cols[3]).replace("/.:", ":"),
                size=int(cols[4]) if cols[4].isdigit() else -1,
                md5=cols[5].decode(),
                sha1=cols[6].decode(),
                sha256=cols[7].decode(),
                error=cols[8].decode().strip() or ("ERROR" if not cols[4].isdigit() else ""),
            )
        )
    return out


MMLS_LINE = re.compile(r"^\d+:\s+(\S+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(.*)$")


def parse_mmls(text: str) -> tuple[int, list[tuple[int, int, str]]]:
    """(sector size, [(start sector, length, description)]) from mmls output."""
    unit = 512
    rows = []
    for line in text.splitlines():
        m = re.search(r"Units are in (\d+)-byte sectors", line)
        if m:
            unit = int(m.group(1))
        m = MMLS_LINE.match(line.strip())
        if m:
            rows.append((int(m.group(2)), int(m.group(4)), m.group(5).strip()))
    return unit, rows


def digests(data: bytes) -> tuple[str, str, str]:
    return (
        hashlib.md5(data).hexdigest(),
        hashlib.sha1(data).hexdigest(),
        hashlib.sha256(data).hexdigest(),
    )


_CONTROL = re.compile(r"[\x00-\x1f]")


def row_path(row: dict) -> str:
    """A files row's path as fls prints it: raw bytes kept, control characters as '^'."""
    if row.get("path_bytes"):
        base = row["path_bytes"].decode("utf-8", "surrogateescape")
        path = base + (f":{row['stream']}" if row["stream"] else "")
    else:
        path = row["path"]
    return _CONTROL.sub("^", path)
