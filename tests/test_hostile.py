"""Hostile names and metadata: stored exactly, shown escaped in every output.

``images/hostile.raw.gz`` (tests/fixtures/build_hostile_image.py) holds names with
ANSI and OSC sequences (colour, clear screen, OSC 52 clipboard, OSC 8 link), rich
markup, a right-to-left override, newline / tab / CR, spreadsheet formulas, HTML,
invalid UTF-8 and a 255-byte name, under a clear-screen volume label. A known-bad
set whose series and comments hold the same kind of strings flags one of them.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).parent / "fixtures" / "images"
FACTS = json.loads((FIXTURES / "hostile.json").read_text())
EXAMKIT = str(Path(sys.executable).with_name("examkit"))
DANGEROUS = ("\x1b", "\x07", "\x9b", "\u202e", "\r")  # ESC, BEL, CSI, RLO, CR


def examkit(*args: str, env: dict[str, str]) -> bytes:
    done = subprocess.run([EXAMKIT, *args], capture_output=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout + done.stderr


def assert_inert(output: bytes, where: str) -> str:
    text = output.decode("utf-8")  # the output itself is always valid UTF-8
    for bad in DANGEROUS:
        assert bad not in text, f"{where}: raw {bad!r} in the output"
    assert "[bold red]markup" not in text or "\\[bold red]" in text or "[bold red]" in text
    return text


@pytest.fixture(scope="module")
def hostile(fixture_images: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    import os

    work = tmp_path_factory.mktemp("hostile")
    env = dict(os.environ, EXAMKIT_HASHSETS=str(work / "library"), COLUMNS="200")
    vics = {
        "odata.metadata": "http://github.com/VICSDATAMODEL/ProjectVic/DataModels/1.2.xml#Media",
        "value": [{"MediaID": 1, "Category": 1, "MD5": FACTS["known_bad_md5"],
                   "Series": "\x1b]52;c;cHduZWQ=\x07[bold]SERIES[/bold]\u202e",
                   "Comments": "\x1b[2J<b>comment</b>", "VictimIdentified": True}],
    }  # fmt: skip
    (work / "set.json").write_text(json.dumps(vics))
    examkit("hashset", "import", str(work / "set.json"), "--name", "bad", "--kind", "known-bad",
            env=env)  # fmt: skip
    case = work / "case.sqlite"
    examkit("scan", str(fixture_images / "hostile.raw"), "--case", str(case), env=env)
    return {"case": case, "env": env, "work": work}


def test_names_are_stored_exactly(hostile: dict[str, Any]) -> None:
    conn = sqlite3.connect(hostile["case"])
    rows = conn.execute("SELECT name, name_bytes FROM files WHERE meta_type = 'file'").fetchall()
    conn.close()
    stored = {(bytes(b) if b is not None else n.encode("utf-8")).hex() for n, b in rows}
    assert set(FACTS["names_hex"]) <= stored


@pytest.mark.parametrize(
    "args",
    [("files",), ("files", "--json"), ("files", "--csv"), ("info",), ("info", "--json"),
     ("hits",), ("hits", "--json"), ("hits", "--csv"), ("hits", "--show-names")],
)  # fmt: skip
def test_every_listing_is_inert(hostile: dict[str, Any], args: tuple[str, ...]) -> None:
    command, *options = args
    text = assert_inert(
        examkit(command, str(hostile["case"]), *options, env=hostile["env"]), " ".join(args)
    )
    if "--json" in options:
        json.loads(text[: text.rindex("]") + 1] if text.lstrip().startswith("[") else text)
    if "--csv" in options:
        for row in csv.reader(io.StringIO(text)):
            for cell in row:
                assert not cell or cell[0] not in "=+-@", f"formula not neutralised: {cell!r}"
    if command == "hits" and "--show-names" not in options:
        assert "<withheld>" in text and "red" not in text


def test_reports_are_inert(hostile: dict[str, Any]) -> None:
    html = hostile["work"] / "report.html"
    examkit("report", str(hostile["case"]), "--format", "html", "-o", str(html),
            env=hostile["env"])  # fmt: skip
    page = assert_inert(html.read_bytes(), "html report")
    assert "<script>" not in page and "<b>comment</b>" not in page
    pdf = hostile["work"] / "report.pdf"
    examkit("report", str(hostile["case"]), "--format", "pdf", "-o", str(pdf), env=hostile["env"])
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, check=True).stdout
    assert_inert(text, "pdf report")
    csv_report = hostile["work"] / "report.csv"
    examkit("report", str(hostile["case"]), "--format", "csv", "-o", str(csv_report),
            env=hostile["env"])  # fmt: skip
    for row in csv.reader(io.StringIO(assert_inert(csv_report.read_bytes(), "csv report"))):
        for cell in row:
            assert not cell or cell[0] not in "=+-@", f"formula not neutralised: {cell!r}"
