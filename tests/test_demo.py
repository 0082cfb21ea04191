"""``examkit demo``: the built-in image scanned against the shipped sample sets."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from examkit.cli.app import main
from examkit.hashsets import Library

SAMPLES = Path(__file__).resolve().parents[1] / "hashsets"


def test_demo_flags_the_sample_stand_ins_and_withholds_their_names(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = main(["demo", "--dir", str(tmp_path), "--workers", "1"])
    out = capsys.readouterr().out
    assert code == 0
    assert "Known-bad hits" in out and out.count("<withheld>") >= 4
    for word in ("checkerboard", "stripes", "inner-2", "gradient"):
        assert word not in out
    assert sorted(s.name for s in Library(tmp_path / "hashsets").sets()) == [
        "sample-hashdeep", "sample-known-bad", "sample-md5sum", "sample-nsrl",
    ]  # fmt: skip
    conn = sqlite3.connect(tmp_path / "demo-case.sqlite")
    flagged = conn.execute("SELECT md5 FROM files WHERE flagged = 1").fetchall()
    good = conn.execute("SELECT count(*) FROM files WHERE known_good = 1").fetchone()[0]
    conn.close()
    vics = json.loads((SAMPLES / "sample-known-bad.vics2.json").read_text())
    stand_ins = {m["MD5"].lower() for m in vics["value"][0]["Media"] if m["MediaID"] < 100}
    assert {row[0] for row in flagged} == stand_ins
    assert good >= 6  # NSRL-style (4 files) and md5sum (2 files) samples
