"""The report framework and the flat formats: custody record, signature file, CSV, hashdeep.

Oracles: ``hashdeep -m`` reads our hashdeep list and matches files that The Sleuth Kit's
``icat`` extracts from the image; the signature file verifies with the key in the case.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from examkit.cli.app import main
from tests.conftest import FIXTURES
from tests.oracle import icat, run_fls

PLAN = {f["path"]: f for f in json.loads((FIXTURES / "plans" / "fat16.json").read_text())["files"]}
BAD = "pictures/checkerboard.png"


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory, fixture_images: Path) -> Path:
    folder = tmp_path_factory.mktemp("reports")
    monkey = pytest.MonkeyPatch()
    monkey.setenv("EXAMKIT_HASHSETS", str(folder / "library"))
    try:
        known_bad = folder / "bad.md5"
        known_bad.write_text(f"{PLAN[BAD]['md5']}  {BAD}\n")
        assert main(["hashset", "import", str(known_bad), "-n", "bad", "-k", "known-bad"]) == 0
        path = folder / "case.sqlite"
        assert main(["scan", str(fixture_images / "fat16.raw"), "--case", str(path),
                     "--workers", "1"]) == 0  # fmt: skip
    finally:
        monkey.undo()
    return path


def report(tmp_path: Path, case: Path, fmt: str, *extra: str) -> Path:
    copy = tmp_path / "case.sqlite"
    if not copy.exists():
        shutil.copy(case, copy)
    out = tmp_path / f"report.{fmt}"
    assert main(["report", str(copy), "--format", fmt, "-o", str(out), *extra]) == 0
    return out


def test_report_is_on_the_record_and_signed(
    case: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    key = tmp_path / "examiner.pem"
    assert main(["key", "generate", "--out", str(key)]) == 0
    monkeypatch.setenv("EXAMKIT_SIGNING_KEY", str(key))
    out = report(tmp_path, case, "csv")
    sha256 = hashlib.sha256(out.read_bytes()).hexdigest()
    conn = sqlite3.connect(tmp_path / "case.sqlite")
    seq, details = conn.execute(
        "SELECT seq, details FROM custody_log WHERE action = 'report_generated'"
    ).fetchone()
    public = conn.execute("SELECT public_key FROM signing_keys").fetchone()[0]
    signed = conn.execute("SELECT count(*) FROM signatures WHERE seq = ?", (seq,)).fetchone()[0]
    conn.close()
    assert json.loads(details)["sha256"] == sha256 and signed == 1
    sig = json.loads(Path(f"{out}.sig").read_text())
    assert sig["sha256"] == sha256 and sig["public_key"] == public
    Ed25519PublicKey.from_public_bytes(bytes.fromhex(public)).verify(
        bytes.fromhex(sig["signature"]), sha256.encode("ascii")
    )  # raises if the signature does not hold
    assert main(["verify", str(tmp_path / "case.sqlite")]) == 0


def test_csv_withholds_flagged_names_and_defuses_formulas(case: Path, tmp_path: Path) -> None:
    out = report(tmp_path, case, "csv")
    text = out.read_text("utf-8")
    assert "checkerboard" not in text
    rows = list(csv.DictReader(text.splitlines()))
    flagged = [r for r in rows if r["flagged"] == "1"]
    assert [r["md5"] for r in flagged] == [PLAN[BAD]["md5"]]
    assert flagged[0]["path"] == "/pictures/<withheld>"
    assert all(not r["path"].startswith(("=", "+", "-", "@")) for r in rows)
    (tmp_path / "named").mkdir()
    shown = report(tmp_path / "named", case, "csv", "--show-names")
    assert "checkerboard" in shown.read_text("utf-8")
    conn = sqlite3.connect(tmp_path / "named" / "case.sqlite")
    reveals = conn.execute("SELECT count(*) FROM custody_log WHERE action = 'names_revealed'")
    assert reveals.fetchone()[0] == 1
    conn.close()


def test_hashdeep_list_matches_files_icat_extracts(
    case: Path, tmp_path: Path, fixture_images: Path
) -> None:
    if shutil.which("hashdeep") is None or shutil.which("icat") is None:
        pytest.skip("hashdeep or The Sleuth Kit's icat is not installed")
    out = report(tmp_path, case, "hashdeep")
    image = fixture_images / "fat16.raw"
    extracted = tmp_path / "extracted"
    extracted.mkdir()
    wanted = {"README.txt", "docs/notes.md", "pictures/stripes.jpg"}
    for entry in run_fls(image):
        name = entry.path.lstrip("/")
        if name in wanted and not entry.deleted:
            (extracted / name.replace("/", "_")).write_bytes(icat(image, str(entry.addr)))
    assert len(list(extracted.iterdir())) == len(wanted)
    result = subprocess.run(
        ["hashdeep", "-m", "-k", str(out), "-r", "-b", str(extracted)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    matched = {line.strip() for line in result.stdout.splitlines() if line.strip()}
    assert matched == {p.replace("/", "_") for p in wanted}, result.stderr
