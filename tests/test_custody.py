"""Tamper tests: after two scans with a known-bad set and a signing key, ``verify`` passes;
any single edit to the case database (made with the triggers dropped, as an attacker
would) makes it fail and names what changed; changed evidence fails ``verify --rehash``."""

from __future__ import annotations

import json
import shutil
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from examkit.cli.app import main
from tests.conftest import FIXTURES

PLAN = {f["path"]: f for f in json.loads((FIXTURES / "plans" / "fat16.json").read_text())["files"]}
BAD = ["pictures/checkerboard.png", "pictures/stripes.jpg"]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def signed_case(
    tmp_path_factory: pytest.TempPathFactory, fixture_images: Path
) -> tuple[Path, Path]:
    """A case with two scanned evidence items, a known-bad set, and signed run ends."""
    folder = tmp_path_factory.mktemp("custody")
    monkey = pytest.MonkeyPatch()
    monkey.setenv("EXAMKIT_SIGNING_KEY", str(folder / "examiner.pem"))
    monkey.setenv("EXAMKIT_HASHSETS", str(folder / "library"))
    try:
        assert main(["key", "generate", "--out", str(folder / "examiner.pem")]) == 0
        known_bad = folder / "bad.md5"
        known_bad.write_text("".join(f"{PLAN[p]['md5']}  {p}\n" for p in BAD))
        assert main(["hashset", "import", str(known_bad), "-n", "bad", "-k", "known-bad"]) == 0
        case = folder / "case.sqlite"
        for image in ("fat16.raw", "ext4.raw"):
            copy = folder / image
            shutil.copy(fixture_images / image, copy)
            code = main(["scan", str(copy), "--case", str(case), "--workers", "1",
                         "--examiner", "Ex. Aminer"])  # fmt: skip
            assert code == 0
    finally:
        monkey.undo()
    return case, folder


@pytest.fixture
def case_copy(signed_case: tuple[Path, Path], tmp_path: Path) -> Path:
    case, _ = signed_case
    copy = tmp_path / "case.sqlite"
    shutil.copy(case, copy)
    return copy


def test_untouched_case_verifies_with_signatures(
    capsys: pytest.CaptureFixture[str], case_copy: Path
) -> None:
    code, out, err = run(capsys, "verify", str(case_copy), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["ok"] and report["problems"] == []
    assert report["signatures"] == 2  # one per scan run
    conn = sqlite3.connect(case_copy)
    flagged = conn.execute("SELECT count(*) FROM files WHERE flagged = 1").fetchone()[0]
    last = conn.execute("SELECT action, details FROM custody_log ORDER BY seq DESC LIMIT 1")
    action, details = last.fetchone()
    conn.close()
    assert flagged == 2
    assert action == "verification_run" and json.loads(details)["ok"] is True


def _edit(sql: str) -> Callable[[sqlite3.Connection], None]:
    def apply(conn: sqlite3.Connection) -> None:
        for trigger in ("custody_log_no_update", "custody_log_no_delete",
                        "signing_keys_no_update", "signatures_no_update"):  # fmt: skip
            conn.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        conn.executescript(sql)

    return apply


TAMPERING = {
    "log entry field": (
        _edit("UPDATE custody_log SET actor = 'someone else' WHERE seq = 3"),
        "entry 3 (",
    ),
    "log entry deleted": (_edit("DELETE FROM custody_log WHERE seq = 4"), "entry 4 is missing"),
    "log entries reordered": (
        _edit(
            "UPDATE custody_log SET seq = -1 WHERE seq = 5;"
            "UPDATE custody_log SET seq = 5 WHERE seq = 6;"
            "UPDATE custody_log SET seq = 6 WHERE seq = -1;"
        ),
        "entry 5 (",
    ),
    "signing key replaced": (
        _edit("UPDATE signing_keys SET public_key = '" + "ab" * 32 + "'"),
        "missing or replaced",
    ),
    "file digest changed": (
        _edit("UPDATE files SET md5 = 'd41d8cd98f00b204e9800998ecf8427e' WHERE file_id = 7"),
        "table files changed",
    ),
    "match row dropped": (_edit("DELETE FROM matches WHERE match_id = 1"), "table matches changed"),
    "evidence hash changed": (
        _edit("UPDATE evidence SET media_md5 = '00000000000000000000000000000000'"),
        "table evidence changed",
    ),
    "file row added": (
        _edit(
            "INSERT INTO files (evidence_id, seq, path, name, allocated, state, status)"
            " SELECT evidence_id, 99999, '/planted.jpg', 'planted.jpg', 1, 'allocated', 'ok'"
            " FROM evidence LIMIT 1"
        ),
        "table files changed",
    ),
}


@pytest.mark.parametrize("what", sorted(TAMPERING))
def test_any_single_edit_fails_verification_and_is_named(
    capsys: pytest.CaptureFixture[str], case_copy: Path, what: str
) -> None:
    edit, expected = TAMPERING[what]
    conn = sqlite3.connect(case_copy)
    edit(conn)
    conn.commit()
    conn.close()
    code, _, err = run(capsys, "verify", str(case_copy))
    assert code == 3
    first = err.splitlines()[0]
    assert first.startswith("VERIFICATION FAILED") and expected in first, err


def test_a_scan_refuses_a_tampered_case(
    capsys: pytest.CaptureFixture[str], case_copy: Path, signed_case: tuple[Path, Path]
) -> None:
    conn = sqlite3.connect(case_copy)
    conn.execute(
        "UPDATE files SET sha1 = NULL WHERE file_id = (SELECT min(file_id) FROM files"
        " WHERE sha1 IS NOT NULL)"
    )
    conn.commit()
    conn.close()
    _, folder = signed_case
    code, _, err = run(capsys, "scan", str(folder / "fat16.raw"), "--case", str(case_copy))
    assert code == 3 and "changed outside examkit" in err
    code, _, err = run(capsys, "match", str(case_copy))
    assert code == 3


def test_changed_evidence_fails_rehash(
    capsys: pytest.CaptureFixture[str], fixture_images: Path, tmp_path: Path
) -> None:
    image = tmp_path / "fat16.raw"
    shutil.copy(fixture_images / "fat16.raw", image)
    case = tmp_path / "case.sqlite"
    assert run(capsys, "scan", str(image), "--case", str(case), "--workers", "1")[0] == 0
    assert run(capsys, "verify", str(case), "--rehash")[0] == 0
    with open(image, "r+b") as fh:  # one byte in the last sector changes
        fh.seek(-1, 2)
        byte = fh.read(1)
        fh.seek(-1, 2)
        fh.write(bytes([byte[0] ^ 0xFF]))
    assert run(capsys, "verify", str(case))[0] == 0  # the records are intact ...
    code, _, err = run(capsys, "verify", str(case), "--rehash")
    assert code == 3 and "evidence fat16: media md5 is now" in err  # ... the evidence is not


def test_evidence_changed_during_a_run_is_caught_when_it_ends(
    fixture_images: Path, tmp_path: Path
) -> None:
    from examkit.scan import ScanOptions, scan

    image = tmp_path / "ext4.raw"
    shutil.copy(fixture_images / "ext4.raw", image)

    class ChangeTheImage:
        """Progress sink that alters the evidence once hashing has begun."""

        done = False

        def phase(self, *args: object) -> None: ...
        def listed(self, entries: int) -> None: ...
        def matched(self, flagged: int, known_good: int) -> None: ...

        def hashed(self, files: int, nbytes: int) -> None:
            if not self.done:
                with open(image, "r+b") as fh:
                    fh.seek(-1, 2)
                    fh.write(b"\x01" if fh.read(1) != b"\x01" else b"\x02")
                self.done = True

    case = tmp_path / "case.sqlite"
    # workers=0: the start hash is taken before any stream is read, the end hash after
    summary = scan(case, [image], options=ScanOptions(workers=0), progress=ChangeTheImage())
    assert summary.evidence[0].verification == "mismatch"
    conn = sqlite3.connect(case)
    stages = [
        (json.loads(d)["stage"], json.loads(d)["result"])
        for (d,) in conn.execute(
            "SELECT details FROM custody_log WHERE action = 'evidence_verified'"
        )
    ]
    conn.close()
    assert stages == [("start", "not_verifiable"), ("end", "mismatch")]


def test_the_end_of_a_run_confirms_the_media_by_sha256(
    fixture_images: Path, tmp_path: Path
) -> None:
    """The start records all three media digests; the end pass reads the media again for
    SHA-256 alone and compares it with the start's. Oracle: coreutils' sha256sum/md5sum."""
    import subprocess

    from examkit.scan import ScanOptions, scan

    image = fixture_images / "ntfs.raw"
    case = tmp_path / "case.sqlite"
    scan(case, [image], options=ScanOptions(workers=2, perceptual=False))
    conn = sqlite3.connect(case)
    rows = conn.execute("SELECT details FROM custody_log WHERE action = 'evidence_verified'"
                        " ORDER BY seq").fetchall()  # fmt: skip
    start, end = (json.loads(d) for (d,) in rows)
    conn.close()
    sha256 = subprocess.run(["sha256sum", str(image)], capture_output=True, text=True,
                            check=True).stdout.split()[0]  # fmt: skip
    md5 = subprocess.run(["md5sum", str(image)], capture_output=True, text=True,
                         check=True).stdout.split()[0]  # fmt: skip
    assert (start["stage"], start["computed"]["sha256"], start["computed"]["md5"]) == (
        "start", sha256, md5)  # fmt: skip
    assert (end["stage"], end["result"], end["computed"]) == ("end", "match", {"sha256": sha256})
    assert end["detail"] == "media unchanged during the run (sha256 as at the start)"


def test_sqlite_and_python_write_the_same_canonical_rows(
    fixture_images: Path, tmp_path: Path
) -> None:
    """The state digest relies on SQLite's json_array; it must equal Python's encoding,
    also for Unicode, emoji and control characters in names (the NTFS fixture has them)."""
    import hashlib

    from examkit.integrity import TABLES, row_json, table_digest

    case = tmp_path / "case.sqlite"
    assert main(["scan", str(fixture_images / "ntfs.raw"), "--case", str(case),
                 "--workers", "1"]) == 0  # fmt: skip
    conn = sqlite3.connect(case)
    awkward = 'tab\t ctrl \x01 del \x7f bidi \u202e quote " back \\ emoji \U0001f600 é'
    conn.execute("UPDATE files SET error = ? WHERE file_id = 1", (awkward,))
    for table in TABLES:
        python = hashlib.sha256("".join(r + "\n" for r in row_json(conn, table)).encode())
        assert table_digest(conn, table)[0] == python.hexdigest(), table
    conn.close()


def test_a_case_recorded_before_a_migration_still_verifies_and_new_columns_are_guarded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """States recorded by a schema-3 examkit (digests over the schema-3 columns, no column
    count) still hold once migrations have appended columns; a value written into an
    appended column behind examkit's back is caught."""
    import gzip

    from examkit import integrity
    from examkit.verification import verify_case

    def schema_3_state(conn: sqlite3.Connection) -> dict[str, object]:
        return {
            table: dict(zip(("sha256", "rows"),
                            integrity.table_digest(conn, table, columns), strict=True))
            for table, columns in integrity.LEGACY_COLUMNS.items()
        }  # fmt: skip

    for module in ("examkit.case", "examkit.runs", "examkit.intake", "examkit.integrity"):
        monkeypatch.setattr(f"{module}.state_digest", schema_3_state)
    image = tmp_path / "fat16.raw"
    image.write_bytes(gzip.decompress((FIXTURES / "fat16.raw.gz").read_bytes()))
    path = tmp_path / "case.sqlite"
    code, _out, err = run(capsys, "scan", str(image), "--case", str(path), "--no-perceptual")
    assert code == 0, err
    monkeypatch.undo()
    assert verify_case(path).ok
    conn = sqlite3.connect(path)
    conn.execute("UPDATE files SET pdq = 'ff' WHERE file_id = (SELECT min(file_id) FROM files)")
    conn.commit()
    conn.close()
    report = verify_case(path)
    assert not report.ok
    assert any("column pdq was filled" in p for p in report.problems), report.problems


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="built from Linux's fields")
def test_the_recorded_platform_is_platforms_own_string(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run records ``platform.platform()``'s string, built without its ``uname -p``
    subprocess (10-14 ms of every run's start)."""
    import platform
    import subprocess

    from examkit.runs import platform_name, tool_versions

    expected = platform.platform()
    if platform.uname().processor not in ("", platform.machine()):
        pytest.skip("this Linux names a processor of its own; platform.platform() shows it")

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a subprocess was started: {args!r}")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
    platform._uname_cache = None  # type: ignore[attr-defined]  # (asked again, uncached)
    assert platform_name() == expected
    monkeypatch.undo()
    assert tool_versions()["platform"] == expected


def test_versions_worked_out_ahead_are_used_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """``tool_versions_ahead`` works the versions out in a thread; the next
    ``tool_versions()`` takes that answer (the same as working them out inline), the one
    after works them out again, and a thread that failed leaves it to the caller."""
    import threading

    from examkit import runs

    inline = runs.tool_versions()
    calls: list[str] = []
    real = runs._tool_versions

    def counted() -> dict[str, str]:
        calls.append(threading.current_thread().name)
        return real()

    monkeypatch.setattr(runs, "_tool_versions", counted)
    runs.tool_versions_ahead()
    assert runs.tool_versions() == inline
    assert calls == ["examkit-versions"]
    assert runs.tool_versions() == inline
    assert calls == ["examkit-versions", threading.current_thread().name]

    def broken() -> dict[str, str]:
        calls.append(threading.current_thread().name)
        raise OSError("no ldconfig here")

    monkeypatch.setattr(runs, "_tool_versions", broken)
    runs.tool_versions_ahead()
    with pytest.raises(OSError, match="no ldconfig"):
        runs.tool_versions()  # worked out again by the caller, whose error it is
    assert calls[-2:] == ["examkit-versions", threading.current_thread().name]


def test_the_state_read_ahead_is_the_state_and_closes_the_scan(
    fixture_images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scan closes its run with the state read ahead in another thread while its workers
    stop (``StateAhead``): the same digests ``state_digest`` gives, and the case verifies."""
    from examkit import runs
    from examkit.integrity import StateAhead, state_digest
    from examkit.verification import verify_case

    def not_called(conn: sqlite3.Connection) -> dict[str, object]:
        raise AssertionError("the run's end digested the case itself")

    monkeypatch.setattr(runs, "state_digest", not_called)  # only the end of a run uses it
    case = tmp_path / "case.sqlite"
    assert main(["scan", str(fixture_images / "ext4.raw"), "--case", str(case),
                 "--workers", "1", "--no-perceptual"]) == 0  # fmt: skip
    monkeypatch.undo()
    assert verify_case(case).ok
    conn = sqlite3.connect(case, isolation_level=None)
    (files,) = conn.execute("SELECT count(*) FROM files").fetchone()
    assert files > 10
    assert StateAhead(conn, case).result(conn) == state_digest(conn)
    conn.close()


def test_a_run_stopped_after_the_state_was_read_ahead_closes_with_it(
    fixture_images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C between the state's reading and the run's end: the run is recorded as
    interrupted with the state read ahead (not digested a second time), and it holds."""
    from examkit import runs, scan
    from examkit.verification import verify_case

    def not_called(conn: sqlite3.Connection) -> dict[str, object]:
        raise AssertionError("the run's end digested the case itself")

    def stopped(*args: object) -> object:
        raise KeyboardInterrupt

    monkeypatch.setattr(runs, "state_digest", not_called)
    monkeypatch.setattr(scan, "_summary", stopped)  # once every result is written
    case = tmp_path / "case.sqlite"
    with pytest.raises(scan.ScanInterrupted):
        scan.scan(case, [fixture_images / "fat16.raw"],
                  options=scan.ScanOptions(workers=1, perceptual=False))  # fmt: skip
    monkeypatch.undo()
    conn = sqlite3.connect(case)
    assert conn.execute("SELECT status FROM runs").fetchall() == [("interrupted",)]
    conn.close()
    assert verify_case(case).ok


def _scanned(fixture_images: Path, tmp_path: Path) -> Path:
    case = tmp_path / "case.sqlite"
    assert main(["scan", str(fixture_images / "fat16.raw"), "--case", str(case),
                 "--workers", "0", "--no-perceptual"]) == 0  # fmt: skip
    return case


@pytest.mark.parametrize(
    "write",
    [
        "UPDATE files SET mime = 'text/x-changed' WHERE file_id = 1",  # through this connection
        "other: UPDATE files SET mime = 'text/x-changed' WHERE file_id = 1",  # another commits
        "ALTER TABLE files ADD COLUMN later TEXT",  # the schema
    ],
)
def test_the_state_read_ahead_is_not_used_once_the_case_is_written(
    fixture_images: Path, tmp_path: Path, write: str
) -> None:
    """Anything written after it started makes ``result`` give ``None`` (the caller then
    digests the case itself), even when the reading had already ended."""
    from examkit.integrity import StateAhead

    case = _scanned(fixture_images, tmp_path)
    conn = sqlite3.connect(case, isolation_level=None)
    ahead = StateAhead(conn, case)
    ahead.close()  # read to the end first: the check is on what was written, not on timing
    if write.startswith("other: "):
        other = sqlite3.connect(case, isolation_level=None)
        other.execute(write.removeprefix("other: "))
        other.close()
    else:
        conn.execute(write)
    assert ahead.result(conn) is None
    conn.close()


def test_the_state_read_ahead_outlives_indexes_built_or_dropped(
    fixture_images: Path, tmp_path: Path
) -> None:
    """An index changes no row and no table the state digests: the scan builds the digest
    indexes while the state is read, and the state read ahead is still the case's."""
    from examkit.integrity import StateAhead, state_digest

    case = _scanned(fixture_images, tmp_path)
    conn = sqlite3.connect(case, isolation_level=None)
    ahead = StateAhead(conn, case)
    conn.execute("CREATE INDEX later_mime ON files(mime)")
    conn.execute("DROP INDEX files_md5")
    ahead.close()
    assert ahead.result(conn) == state_digest(conn)
    conn.execute("ALTER TABLE files ADD COLUMN later TEXT")  # a table is still a change
    assert ahead.result(conn) is None
    conn.close()


def test_the_state_is_not_read_ahead_of_an_open_transaction(
    fixture_images: Path, tmp_path: Path
) -> None:
    """Rows written but not committed are not seen by other connections: no state then."""
    from examkit.integrity import StateAhead

    case = _scanned(fixture_images, tmp_path)
    conn = sqlite3.connect(case, isolation_level=None)
    conn.execute("BEGIN")
    conn.execute("UPDATE files SET mime = 'text/x-changed' WHERE file_id = 1")
    assert StateAhead(conn, case).result(conn) is None
    conn.execute("ROLLBACK")
    ahead = StateAhead(conn, case)
    assert ahead.result(conn) is not None
    conn.close()
