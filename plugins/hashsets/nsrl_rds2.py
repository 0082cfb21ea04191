"""NIST NSRL RDS 2.x and 1.5 loader (``NSRLFile.txt``).

RDS 2.x and 1.5 are quoted CSV with a header naming the columns; names are
ISO-8859-1 bytes (read as latin-1, so every byte maps to one character and
control characters are kept for the display gate to escape).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from examkit.hashformat import EntrySink, HashSetError, HashSetFormat
from examkit.hookspecs import Register, hookimpl

from .nsrl import CANNOT_READ, _key

# reduced header name -> role; RDS 2.x:
#   "SHA-1","MD5","CRC32","FileName","FileSize","ProductCode","OpSystemCode","SpecialCode"
# RDS 1.5 (and earlier 1.x):
#   "SHA-1","FileName","FileSize","ProductCode","OpSystemCode","MD4","MD5","CRC32","SpecialCode"
RDS2_ROLES: dict[str, str] = {
    "sha1": "sha1",
    "md5": "md5",
    "sha256": "sha256",
    "md4": "md4",
    "crc32": "crc32",
    "filename": "name",
    "filesize": "size",
    "productcode": "product_code",
    "opsystemcode": "os_code",
    "specialcode": "special_code",
}
UTF8_BOM_LATIN1 = "\xef\xbb\xbf"  # the UTF-8 BOM as read through latin-1


def _rds2_header(fields: list[str]) -> dict[str, int] | None:
    """Role -> column index from an NSRLFile.txt header, or None if it is not one."""
    if not fields:
        return None
    if fields[0].startswith(UTF8_BOM_LATIN1):
        fields = [fields[0][len(UTF8_BOM_LATIN1) :], *fields[1:]]
    keys = [_key(f) for f in fields]
    if keys[0] != "sha1":
        return None
    index: dict[str, int] = {}
    for i, key in enumerate(keys):
        role = RDS2_ROLES.get(key)
        if role is not None:
            index.setdefault(role, i)
    if "name" not in index or not ({"product_code", "os_code"} & index.keys()):
        return None
    return index


def _unparse(row: list[str]) -> str:
    out = io.StringIO()
    csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="").writerow(row)
    return out.getvalue()


class NsrlRds2Format(HashSetFormat):
    """NIST NSRL RDS 2.x and 1.5 ``NSRLFile.txt`` (quoted CSV with a header)."""

    name = "nsrl-rds2"
    description = "NIST NSRL RDS 2.x / 1.5 NSRLFile.txt (quoted CSV)"
    version = "1"
    priority = 75

    def detect(self, head: bytes, path: Path) -> bool:
        text = head.decode("latin-1")
        if text.startswith(UTF8_BOM_LATIN1):
            text = text[len(UTF8_BOM_LATIN1) :]
        if text[:7].upper() != '"SHA-1"':
            return False
        first = text.split("\n", 1)[0].rstrip("\r")
        try:
            fields = next(csv.reader([first]))
        except (csv.Error, StopIteration):
            return False
        return _rds2_header(fields) is not None

    def read(self, path: Path, sink: EntrySink) -> None:
        try:
            f = open(path, encoding="latin-1", newline="", buffering=1 << 20)  # noqa: SIM115
        except OSError as exc:
            raise HashSetError(f"{path.name}: cannot read: {exc.strerror}", CANNOT_READ) from exc
        # latin-1: every byte is one character, so nothing fails to decode and names keep
        # their control characters; newline="" lets csv see CR/LF inside quoted names
        with f:
            reader = csv.reader(f)
            try:
                header = next(reader)
            except StopIteration:
                raise HashSetError(f"{path.name}: empty file", "Is this the right file?") from None
            except csv.Error as exc:
                raise HashSetError(
                    f"{path.name}: unreadable NSRLFile header: {exc}", "Is this the right file?"
                ) from exc
            index = _rds2_header(header)
            if index is None:
                raise HashSetError(
                    f"{path.name}: first line is not an NSRLFile.txt header",
                    'Expected "SHA-1","MD5","CRC32","FileName",... (RDS 2.x) or '
                    '"SHA-1","FileName","FileSize",... (RDS 1.5).',
                )
            self._rows(reader, len(header), index, sink)

    @staticmethod
    def _rows(
        reader: Any,  # csv reader (its type is private to the csv module)
        width: int,
        index: dict[str, int],
        sink: EntrySink,
    ) -> None:
        i_sha1 = index["sha1"]
        i_name = index["name"]
        i_md5 = index.get("md5")
        i_sha256 = index.get("sha256")
        i_md4 = index.get("md4")
        i_crc = index.get("crc32")
        i_size = index.get("size")
        i_product = index.get("product_code")
        i_os = index.get("os_code")
        i_special = index.get("special_code")
        add = sink.add
        malformed = sink.malformed
        previous = reader.line_num
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:  # e.g. a runaway quote past the field size limit
                malformed(previous + 1, f"CSV error: {exc}", None)
                previous = reader.line_num
                continue
            line = previous + 1
            previous = reader.line_num
            if len(row) != width:
                if row:  # a blank line yields []: skip it silently
                    malformed(line, f"expected {width} fields, found {len(row)}", _unparse(row))
                continue
            size: int | None = None
            if i_size is not None:
                text = row[i_size]
                try:
                    size = int(text)
                except ValueError:
                    if text.strip():
                        malformed(line, f"FileSize is not a number: {text!r}", _unparse(row))
                        continue
            meta: dict[str, Any] = {}
            if i_crc is not None and (value := row[i_crc].strip()):
                meta["crc32"] = value.lower()
            if i_product is not None and (value := row[i_product].strip()):
                try:
                    meta["product_code"] = int(value)
                except ValueError:
                    meta["product_code"] = value
            if i_os is not None and (value := row[i_os].strip()):
                meta["os_code"] = value
            if i_special is not None and (value := row[i_special].strip()):
                meta["special_code"] = value
            if i_md4 is not None and (value := row[i_md4].strip()):
                meta["md4"] = value.lower()
            add(
                sha1=row[i_sha1],
                md5=row[i_md5] if i_md5 is not None else None,
                sha256=row[i_sha256] if i_sha256 is not None else None,
                name=row[i_name],
                size=size,
                meta=meta,
                line=line,
            )


@hookimpl
def register_hashset_formats(register: Register) -> None:
    register(NsrlRds2Format())
