"""``examkit export``: content out of the evidence, equal to TSK's icat, safe names, on record."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

from examkit.cli.app import main
from examkit.export import safe_name


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def fingerprint(path: Path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


@pytest.fixture
def scanned(fixture_images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Any:
    image = tmp_path / "ntfs.raw"
    image.write_bytes((fixture_images / "ntfs.raw").read_bytes())
    before = fingerprint(image)
    case = tmp_path / "case.sqlite"
    code, _out, err = run(capsys, "scan", str(image), "--case", str(case), "--no-perceptual")
    assert code == 0, err
    conn = sqlite3.connect(case)
    conn.row_factory = sqlite3.Row
    rows = [dict(r) for r in conn.execute(
        "SELECT * FROM files WHERE status = 'ok' AND size > 0 ORDER BY file_id")]  # fmt: skip
    conn.close()
    return {"image": image, "case": case, "rows": rows, "before": before, "tmp": tmp_path}


def test_exported_content_equals_icat_and_the_manifest_audits(
    scanned: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = scanned["rows"]
    picks = [next(r for r in rows if r["stream"] and r["attr_type"] == 128)]  # an ADS
    picks += [r for r in rows if not r["stream"] and not r["path"].startswith("/$")][:4]
    deleted = [r for r in rows if r["state"] != "allocated"]
    picks += deleted[:1]
    out_dir = scanned["tmp"] / "export"
    ids = [arg for r in picks for arg in ("--file-id", str(r["file_id"]))]
    code, _out, err = run(capsys, "export", str(scanned["case"]), *ids, "--to", str(out_dir),
                         "--reason", "defence disclosure", "--examiner", "J. Doe")  # fmt: skip
    assert code == 0, err
    for row in picks:
        address = f"{row['inode']}-{row['attr_type']}-{row['attr_id']}"
        icat = subprocess.run(["icat", str(scanned["image"]), address], capture_output=True,
                              check=True).stdout  # fmt: skip
        (written,) = out_dir.glob(f"{row['file_id']}-*")
        assert written.read_bytes() == icat
    audit = subprocess.run(
        ["hashdeep", "-c", "md5,sha1,sha256", "-a", "-k", "manifest.hashdeep", "-b",
         *[p.name for p in out_dir.iterdir() if p.name != "manifest.hashdeep"]],
        cwd=out_dir, capture_output=True, text=True,
    )  # fmt: skip
    assert "Audit passed" in audit.stdout, audit.stdout + audit.stderr
    conn = sqlite3.connect(scanned["case"])
    actor, details = conn.execute(
        "SELECT actor, details FROM custody_log WHERE action = 'export'"
    ).fetchone()
    conn.close()
    entry = json.loads(details)
    assert actor == "J. Doe" and entry["reason"] == "defence disclosure"
    assert {f["file_id"] for f in entry["files"]} == {r["file_id"] for r in picks}
    assert all(f["sha256"] == r["sha256"] for f, r in zip(
        sorted(entry["files"], key=lambda f: f["file_id"]), picks, strict=True))  # fmt: skip
    # the evidence is untouched by scan, verify and export
    assert run(capsys, "verify", str(scanned["case"]), "--rehash")[0] == 0
    assert fingerprint(scanned["image"]) == scanned["before"]


def test_nothing_is_overwritten_and_no_symlink_is_followed(
    scanned: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    row = next(r for r in scanned["rows"] if not r["path"].startswith("/$") and not r["stream"])
    out_dir = scanned["tmp"] / "busy"
    out_dir.mkdir()
    victim = out_dir / safe_name(row["file_id"], row["name"], False)
    victim.write_text("an earlier file")
    code, _out, err = run(capsys, "export", str(scanned["case"]), "--file-id",
                          str(row["file_id"]), "--to", str(out_dir))  # fmt: skip
    assert code == 2 and "nothing is overwritten" in err
    assert victim.read_text() == "an earlier file"
    assert not (out_dir / "manifest.hashdeep").exists()
    elsewhere = scanned["tmp"] / "elsewhere"
    elsewhere.mkdir()
    link = scanned["tmp"] / "link"
    link.symlink_to(elsewhere)
    code, _out, err = run(capsys, "export", str(scanned["case"]), "--file-id",
                          str(row["file_id"]), "--to", str(link))  # fmt: skip
    assert code == 2 and "symbolic link" in err
    assert list(elsewhere.iterdir()) == []


def test_a_flagged_file_needs_a_reason_and_keeps_its_name_hidden(
    scanned: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    row = next(r for r in scanned["rows"] if not r["path"].startswith("/$"))
    source = tmp_path / "bad.md5"
    source.write_text(f"{row['md5']}  stand-in\n")
    assert run(capsys, "hashset", "import", str(source), "--name", "bad", "--kind",
               "known-bad")[0] == 0  # fmt: skip
    assert run(capsys, "match", str(scanned["case"]))[0] == 0
    out_dir = tmp_path / "flagged"
    code, _out, err = run(capsys, "export", str(scanned["case"]), "--file-id",
                          str(row["file_id"]), "--to", str(out_dir))  # fmt: skip
    assert code == 2 and "needs a reason" in err
    code, out, err = run(capsys, "export", str(scanned["case"]), "--file-id", str(row["file_id"]),
                         "--to", str(out_dir), "--reason", "lab analysis")  # fmt: skip
    assert code == 0, err
    assert [p.name for p in sorted(out_dir.iterdir())] == [f"{row['file_id']}.bin",
                                                          "manifest.hashdeep"]  # fmt: skip
    assert row["name"] not in out and row["name"] not in err


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../../etc/passwd", "7-etc_passwd"),
        ("\x1b]52;c;ZXZpbA==\x07photo.jpg", "7-52_c_ZXZpbA_photo.jpg"),
        ("[bold]x[/bold].png", "7-bold_x_bold_.png"),
        ("\u202egnp.exe", "7-gnp.exe"),
        ("a\nb\x00c", "7-a_b_c"),
        ("..", "7-file"),
        ("", "7.bin"),
    ],
)
def test_safe_names(name: str, expected: str) -> None:
    made = safe_name(7, name, flagged=False)
    assert made == expected
    assert "/" not in made and not made.startswith(".") and made.isascii()
    assert safe_name(7, name, flagged=True) == "7.bin"
    assert len(safe_name(7, "x" * 5000, flagged=False)) <= 130
    assert os.sep not in made
