"""The command line: exit codes, one-line errors, JSON/CSV output."""

from __future__ import annotations

import io
import json
import os
import sqlite3
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from examkit.cli.app import main
from examkit.cli.render import write_csv
from tests.conftest import CORPUS

pytestmark = pytest.mark.corpus
IMAGE = CORPUS / "tsk-image.dd"
IMAGE_MD5 = "3ebb0b7dcd6b5fcd59a0020625d70994"  # MANIFEST: tsk-image.dd


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_no_arguments_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys)
    assert code == 0 and "scan" in out


def test_missing_image_is_one_line_with_hint(capsys, tmp_path: Path) -> None:
    code, _, err = run(
        capsys, "scan", str(tmp_path / "nope.dd"), "--case", str(tmp_path / "c.sqlite")
    )
    assert code == 1
    assert err.splitlines()[0].startswith("examkit: error: no such image")
    assert err.splitlines()[1].startswith("hint: ")
    assert "Traceback" not in err


def test_a_named_pipe_as_evidence_is_refused_not_waited_on(capsys, tmp_path: Path) -> None:
    fifo = tmp_path / "disk.dd"  # nobody writes to it: opening it would wait for ever
    os.mkfifo(fifo)
    code, _, err = run(capsys, "scan", str(fifo), "--case", str(tmp_path / "c.sqlite"))
    assert code == 1 and "Traceback" not in err
    assert err.splitlines()[0].startswith("examkit: error: ")
    assert "not a file or a disk" in err.splitlines()[0]
    assert err.splitlines()[1].startswith("hint: ")


def test_unknown_option_is_usage_error(capsys) -> None:
    code, _, err = run(capsys, "scan", "--bogus")
    assert code == 2 and "Traceback" not in err


def test_not_a_case_file(capsys, tmp_path: Path) -> None:
    bogus = tmp_path / "notes.txt"
    bogus.write_text("hello")
    code, _, err = run(capsys, "info", str(bogus))
    assert code == 1 and "not an examkit case database" in err and len(err.splitlines()) == 2
    assert bogus.read_text() == "hello"  # untouched


def test_scan_json_info_files(capsys, corpus, tmp_path: Path) -> None:
    case = tmp_path / "c.sqlite"
    code, out, _ = run(
        capsys, "scan", str(IMAGE), "--case", str(case), "--examiner", "Ex. Aminer",
        "--evidence-id", "E001", "--expect", f"md5:{IMAGE_MD5}", "--json", "--workers", "1",
    )  # fmt: skip
    assert code == 0
    summary = json.loads(out)
    (ev,) = summary["evidence"]
    assert ev["evidence_id"] == "E001" and ev["verification"] == "match"
    assert summary["status"] == "complete"

    code, out, _ = run(capsys, "info", str(case), "--json")
    info = json.loads(out)
    assert info["custody_log"]["chain_ok"] is True
    actions = [r[0] for r in sqlite3.connect(case).execute("SELECT action FROM custody_log")]
    assert actions == ["case_created", "run_started", "evidence_added", "evidence_verified",
                       "evidence_verified", "run_finished"]  # fmt: skip
    stages = [
        json.loads(d)["stage"]
        for (d,) in sqlite3.connect(case).execute(
            "SELECT details FROM custody_log WHERE action = 'evidence_verified'"
        )
    ]
    assert stages == ["start", "end"]  # verified as the run starts, confirmed as it ends
    run_row = info["runs"][0]
    assert run_row["examiner"] == "Ex. Aminer" and run_row["status"] == "complete"
    assert "filesystems/tsk" in run_row["plugin_versions"]

    code, out, _ = run(capsys, "files", str(case), "--json", "--state", "deleted")
    rows = json.loads(out)
    assert {r["name"] for r in rows} == {".another_file.swp", "another_file~"}

    code, out, _ = run(capsys, "files", str(case), "--csv")
    assert out.splitlines()[0].startswith("file_id,evidence_id")
    assert "39cb097008d17660abd0539891a672af" in out  # passwords.txt (MANIFEST)

    # a second scan of the same evidence hashes nothing again
    code, out, _ = run(capsys, "scan", str(IMAGE), "--case", str(case), "--json")
    assert code == 0
    n_runs = sqlite3.connect(case).execute("SELECT count(*) FROM runs").fetchone()[0]
    assert n_runs == 2
    hashed_again = (
        sqlite3.connect(case).execute("SELECT count(*) FROM files WHERE run_id = 2").fetchone()[0]
    )
    assert hashed_again == 0


def test_wrong_expected_hash_exits_3(capsys, corpus, tmp_path: Path) -> None:
    code, out, _ = run(
        capsys, "scan", str(IMAGE), "--case", str(tmp_path / "c.sqlite"),
        "--expect", "md5:" + "0" * 32, "--workers", "0",
    )  # fmt: skip
    assert code == 3 and "verification: md5: expected 000" in out


def test_case_init_and_evidence_add(capsys, corpus, tmp_path: Path) -> None:
    case = tmp_path / "c.sqlite"
    assert run(capsys, "case", "init", str(case), "--case-number", "2026-0042")[0] == 0
    assert run(capsys, "case", "init", str(case))[0] == 2  # refuses to overwrite
    code, out, _ = run(capsys, "evidence", "add", str(case), str(CORPUS / "plaso-image-split.E01"))
    assert code == 0 and "ewf" in out
    (paths,) = sqlite3.connect(case).execute("SELECT source_paths FROM evidence").fetchone()
    assert len(json.loads(paths)) == 2


def test_plugins_json(capsys) -> None:
    _, out, _ = run(capsys, "plugins", "--json")
    names = {(p["kind"], p["name"]) for p in json.loads(out)}
    assert {("containers", "ewf"), ("containers", "raw"), ("filesystems", "tsk")} <= names


def test_csv_defuses_spreadsheet_formulas() -> None:
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        write_csv(["path"], [{"path": '=HYPERLINK("x")'}, {"path": "+1"}, {"path": "ok"}])
    lines = buffer.getvalue().splitlines()
    assert lines[1].startswith("\"'=HYPERLINK") and lines[2] == "'+1" and lines[3] == "ok"


def test_unexpected_errors_are_one_line_unless_debug(capsys, monkeypatch, tmp_path: Path) -> None:
    import examkit.cli.case_cmds as case_cmds

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(case_cmds.Case, "create", boom)
    code, _, err = run(capsys, "case", "init", str(tmp_path / "c.sqlite"))
    assert code == 1 and "Traceback" not in err
    assert err.splitlines()[0] == "examkit: error: internal error: RuntimeError: simulated bug"
    code, _, err = run(capsys, "--debug", "case", "init", str(tmp_path / "c.sqlite"))
    assert code == 1 and "Traceback" in err
