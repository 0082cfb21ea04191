"""Write the harmless sample hash sets in this folder (run by hand; outputs are committed).

    .venv/bin/python hashsets/make_samples.py

Known-bad "stand-ins" are the hashes of a few synthetic pictures on the built-in
demo disk, taken from the plan the image builder wrote
(``tests/fixtures/images/plans/demo-p*.json``), plus generated hashes of nothing
(``examkit-sample-<n>``). Nothing here comes from a real hash set.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

HERE = Path(__file__).resolve().parent
PLANS = HERE.parent / "tests" / "fixtures" / "images" / "plans"
NTFS = {f["path"]: f for f in json.loads((PLANS / "demo-p1.json").read_text())["files"]}
FAT = {f["path"]: f for f in json.loads((PLANS / "demo-p2.json").read_text())["files"]}

BAD = [  # (plan, path, category, series, victim identified)
    (NTFS, "pictures/checkerboard.png", 1, "SAMPLE-SERIES-A", True),
    (NTFS, "pictures/stripes.jpg", 2, "SAMPLE-SERIES-B", False),
    (NTFS, "deleted/deleted-dir/inner-2.png", 1, "SAMPLE-SERIES-A", True),  # orphaned on NTFS
    (FAT, "pictures/vacation/gradient.jpeg", 3, None, None),
]
GOOD_NSRL = [(NTFS, "README.txt"), (NTFS, "docs/notes.md"), (FAT, "README.txt"),
             (FAT, "docs/table.csv")]  # fmt: skip
GOOD_MD5SUM = [(NTFS, "binary/random-4k.bin"), (NTFS, "docs/config.json")]


def generated(n: int, algorithm: str) -> str:
    return hashlib.new(algorithm, f"examkit-sample-{n}".encode()).hexdigest()


def vics2() -> dict[str, object]:
    media = []
    for i, (plan, path, category, series, victim) in enumerate(BAD, 1):
        f = plan[path]
        media.append({"MediaID": i, "Category": category, "MD5": f["md5"].upper(),
                      "SHA1": f["sha1"], "MediaSize": f["size"], "Series": series,
                      "VictimIdentified": victim, "IsDistributed": True,
                      "Comments": "synthetic stand-in for the examkit demo"})  # fmt: skip
    for n in range(20):  # entries that match nothing on the demo disk
        media.append({"MediaID": 100 + n, "Category": 1 + n % 3,
                      "MD5": generated(n, "md5"), "SHA1": generated(n, "sha1"),
                      "MediaSize": 1000 + n, "Series": f"SAMPLE-SERIES-{n % 4}",
                      "VictimIdentified": n % 2 == 0, "IsDistributed": False})  # fmt: skip
    return {
        "@odata.context": "http://github.com/ICMEC/ProjectVic/DataModels/2.0.xml/US/$metadata#Cases",
        "value": [{"CaseID": "EXAMKIT-SAMPLE", "Media": media}],
    }


def nsrl_v3(path: Path) -> None:
    path.unlink(missing_ok=True)
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE VERSION (version TEXT, build_set TEXT, build_date TEXT, release_date TEXT,"
        " description TEXT);"
        "CREATE TABLE MFG (manufacturer_id INTEGER PRIMARY KEY, name TEXT);"
        "CREATE TABLE OS (operating_system_id INTEGER PRIMARY KEY, name TEXT, version TEXT,"
        " manufacturer_id INTEGER);"
        "CREATE TABLE PKG (package_id INTEGER PRIMARY KEY, name TEXT, version TEXT,"
        " operating_system_id INTEGER, manufacturer_id INTEGER, language TEXT,"
        " application_type TEXT);"
        "CREATE TABLE FILE (sha256 VARCHAR NOT NULL, sha1 VARCHAR NOT NULL, md5 VARCHAR NOT NULL,"
        " crc32 VARCHAR NOT NULL, file_name VARCHAR NOT NULL, file_size INTEGER NOT NULL,"
        " package_id INTEGER NOT NULL);"
    )
    conn.execute("INSERT INTO VERSION VALUES ('sample-1.0', 'Sample', '2026-11-23', '2026-11-23',"
                 " 'examkit sample, NSRL RDS v3 layout, synthetic')")  # fmt: skip
    conn.execute("INSERT INTO MFG VALUES (1, 'Example Software Co.')")
    conn.execute("INSERT INTO OS VALUES (1, 'ExampleOS', '1', 1)")
    conn.execute("INSERT INTO PKG VALUES (1, 'Example Suite', '1.0', 1, 1, 'English', 'Office')")
    rows = []
    for plan, name in GOOD_NSRL:
        f = plan[name]
        rows.append((f["sha256"].upper(), f["sha1"].upper(), f["md5"].upper(), "00000000",
                     name.rsplit("/", 1)[-1], f["size"], 1))  # fmt: skip
    for n in range(40):
        rows.append((generated(n, "sha256").upper(), generated(n, "sha1").upper(),
                     generated(n, "md5").upper(), "00000000", f"library-{n}.dll", 4096 + n, 1))  # fmt: skip
    conn.executemany("INSERT INTO FILE VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    conn.commit()
    conn.execute("VACUUM")
    conn.close()


def md5sum() -> str:
    lines = [f"{plan[p]['md5']}  {p}" for plan, p in GOOD_MD5SUM]
    lines += [f"{generated(1000 + n, 'md5')}  vendor/tool-{n}.exe" for n in range(10)]
    return "\n".join(lines) + "\n"


def hashdeep() -> str:
    head = ["%%%% HASHDEEP-1.0", "%%%% size,md5,sha256,filename",
            "## Invoked from: /samples", "## $ hashdeep -r vendor", "##"]  # fmt: skip
    body = [f"{2000 + n},{generated(2000 + n, 'md5')},{generated(2000 + n, 'sha256')},"
            f"/samples/vendor/file-{n}.dat" for n in range(10)]  # fmt: skip
    return "\n".join(head + body) + "\n"


def main() -> None:
    (HERE / "sample-known-bad.vics2.json").write_text(json.dumps(vics2(), indent=1) + "\n")
    nsrl_v3(HERE / "sample-known-good.nsrl-v3.db")
    (HERE / "sample-known-good.md5").write_text(md5sum())
    (HERE / "sample-known-good.hashdeep.txt").write_text(hashdeep())
    print("wrote", ", ".join(sorted(p.name for p in HERE.glob("sample-*"))))


if __name__ == "__main__":
    main()
