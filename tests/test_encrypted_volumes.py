"""LUKS and LVM volumes made by cryptsetup and the LVM tools, and --fs-backend.

Fixtures: ``tests/fixtures/images/layered`` (``build_layered_images.py``). The
oracles are independent of examkit: the source files' MD5/SHA-256, the UUIDs
and volume keys cryptsetup reported (``luksUUID``, ``luksDump --dump-volume-key``)
and the segment maps ``lvs``/``pvs`` reported.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from examkit.layers import parse_unlock
from examkit.plan import mark_snapshot_copies
from examkit.scan import ScanOptions
from tests.conftest import FIXTURES, do_scan, unpack
from tests.conftest import dict_rows as query

EXAMKIT = str(Path(sys.executable).with_name("examkit"))

LAYERED = FIXTURES / "layered"


EXPECTED: dict[str, Any] = json.loads((LAYERED / "expected.json").read_text("utf-8"))
IMAGES: dict[str, Any] = EXPECTED["images"]
PASSPHRASE = (LAYERED / "luks.passphrase").read_bytes()
KEYFILE = LAYERED / "luks.keyfile"
LUKS = ["luks1.raw.gz", "luks2.raw.gz", "luks2-argon2id.raw.gz"]


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("layered")
    return {name: unpack(LAYERED / name, folder) for name in IMAGES}


def _scan(tmp_path: Path, image: Path, workers: int = 0, **options: Any) -> Path:
    case = tmp_path / "case.sqlite"
    opts = ScanOptions(workers=workers, verify_media=False, **options)
    summary = do_scan(case, [image], options=opts)
    assert summary.status == "complete", summary
    return case


def _files(case: Path) -> dict[str, dict[str, Any]]:
    rows = query(case, "SELECT path, size, md5, sha256, status FROM files"
                       " WHERE meta_type = 'file' AND status != 'no_content'")  # fmt: skip
    return {r["path"]: r for r in rows}


def _assert_files(case: Path, expected: dict[str, Any]) -> None:
    found = _files(case)
    for path, facts in expected.items():
        assert path in found, f"{path} not listed"
        row = found[path]
        assert (row["size"], row["md5"], row["sha256"], row["status"]) == (
            facts["size"], facts["md5"], facts["sha256"], "ok"
        ), path  # fmt: skip


def _unlock(text: str) -> tuple[Any, ...]:
    return (parse_unlock(text),)


@pytest.mark.parametrize("name", LUKS)
def test_luks_without_a_key_is_recorded_encrypted(
    images: dict[str, Path], tmp_path: Path, name: str
) -> None:
    facts = IMAGES[name]
    case = _scan(tmp_path, images[name])
    (vol,) = query(case, "SELECT kind, layer, layer_type, locked, identifiers, layer_error"
                         " FROM volumes")  # fmt: skip
    assert vol["layer"] == "luks" and vol["layer_type"] == f"LUKS{facts['luks_version']}"
    assert vol["locked"] == 1 and "no key given" in vol["layer_error"]
    assert json.loads(vol["identifiers"])["uuid"] == facts["uuid"]
    assert query(case, "SELECT count(*) AS n FROM files")[0]["n"] == 0
    (entry,) = query(case, "SELECT actor, details FROM custody_log WHERE action = 'volume_locked'")
    assert entry["actor"] == "pytest" and json.loads(entry["details"])["volume"] == 0


@pytest.mark.parametrize("name", LUKS)
def test_luks_with_the_passphrase_scans_every_file(
    images: dict[str, Path], tmp_path: Path, name: str
) -> None:
    facts = IMAGES[name]
    unlocks = _unlock(f"{facts['uuid'].upper()}=password:{PASSPHRASE.decode()}")
    case = _scan(tmp_path, images[name], workers=2, unlocks=unlocks)  # workers reopen the chain
    vols = query(case, "SELECT idx, kind, locked, unlocked_with, length, chain, parent_volume_id"
                       " FROM volumes ORDER BY idx")  # fmt: skip
    assert [v["kind"] for v in vols] == ["whole", "decrypted"]
    assert (vols[0]["locked"], vols[0]["unlocked_with"]) == (0, "password")
    assert vols[1]["length"] == facts["decrypted_size"] and vols[1]["parent_volume_id"]
    fs = query(case, "SELECT walker, fs_type, status FROM filesystems")
    assert [(f["walker"], f["fs_type"], f["status"]) for f in fs] == [("tsk", "ext4", "ok")]
    _assert_files(case, facts["files"])
    (entry,) = query(case, "SELECT details FROM custody_log WHERE action = 'volume_unlocked'")
    details = json.loads(entry["details"])
    assert details["secret_kind"] == "password" and details["identifiers"]["uuid"] == facts["uuid"]


def test_luks2_key_file_slot(images: dict[str, Path], tmp_path: Path) -> None:
    name = "luks2-argon2id.raw.gz"
    case = _scan(tmp_path, images[name], unlocks=_unlock(f"0=key-file:{KEYFILE}"))
    assert query(case, "SELECT unlocked_with FROM volumes WHERE idx = 0")[0]["unlocked_with"] == (
        "key-file"
    )
    _assert_files(case, IMAGES[name]["files"])


@pytest.mark.parametrize("name", LUKS)
def test_volume_key_matches_cryptsetup(images: dict[str, Path], name: str) -> None:
    from examkit_plugins.volumes.luks_format import master_key, parse_header

    data = images[name].read_bytes()
    header = parse_header(lambda at, n: data[at : at + n])
    assert header.uuid == IMAGES[name]["uuid"] and header.data_offset == IMAGES[name]["data_offset"]
    key = master_key(header, lambda at, n: data[at : at + n], PASSPHRASE)
    assert key is not None and key.hex() == IMAGES[name]["volume_key_hex"]
    assert master_key(header, lambda at, n: data[at : at + n], b"wrong") is None


def test_wrong_secret_leaves_it_locked(images: dict[str, Path], tmp_path: Path) -> None:
    case = _scan(tmp_path, images["luks2.raw.gz"], unlocks=_unlock("*=password:not-this-one"))
    (vol,) = query(case, "SELECT locked, layer_error FROM volumes")
    assert vol["locked"] == 1 and "no key slot opens" in vol["layer_error"]
    (entry,) = query(case, "SELECT details FROM custody_log WHERE action = 'volume_locked'")
    assert json.loads(entry["details"])["secrets_tried"] == ["password"]


def test_no_secret_anywhere_in_the_case(images: dict[str, Path], tmp_path: Path) -> None:
    """The CLI, as an examiner runs it: the passphrase and the key file's bytes appear in no
    byte of the case database, its WAL or lock file, nor in the batch log and events."""
    image = images["luks2-argon2id.raw.gz"]
    case = tmp_path / "cli.sqlite"
    run = subprocess.run(
        [EXAMKIT, "scan", "-c", str(case), str(image), "-e", "pytest",
         "--no-verify", "--workers", "2", "--unlock", f"*=password:{PASSPHRASE.decode()}"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    jobs = tmp_path / "jobs.toml"
    jobs.write_text(
        f'[[case]]\npath = "batch.sqlite"\nexaminer = "pytest"\nverify = false\n'
        f'[[case.evidence]]\npath = "{image}"\nunlock = ["*=key-file:{KEYFILE}"]\n'
    )
    batch = subprocess.run([EXAMKIT, "batch", str(jobs), "--json"],
                           capture_output=True, text=True, check=False)  # fmt: skip
    assert batch.returncode == 0, batch.stderr + batch.stdout
    assert _files(tmp_path / "batch.sqlite").keys() >= set(IMAGES[image.name + ".gz"]["files"])
    secrets = [PASSPHRASE, KEYFILE.read_bytes(), KEYFILE.read_bytes().hex().encode()]
    checked = 0
    for path in tmp_path.iterdir():
        if path.is_file() and path.name.endswith((".sqlite", ".log", ".lock", "-wal")):
            blob = path.read_bytes()
            checked += 1
            for secret in secrets:
                assert secret not in blob, f"a secret is in {path.name}"
    for text in (run.stdout, run.stderr, batch.stdout, batch.stderr):
        assert PASSPHRASE.decode() not in text
    assert checked >= 3
    line = query(case, "SELECT command_line FROM runs")[0]["command_line"]
    assert "*=password:(withheld)" in line


def test_lvm_logical_volumes(images: dict[str, Path], tmp_path: Path) -> None:
    facts = IMAGES["lvm.raw.gz"]
    case = _scan(tmp_path, images["lvm.raw.gz"], workers=2)
    vols = {v["description"].split(",")[0]: v for v in query(
        case, "SELECT idx, kind, layer, layer_type, length, description, identifiers, chain"
              " FROM volumes")}  # fmt: skip
    top = next(v for v in vols.values() if v["layer"] == "lvm")
    assert top["layer_type"] == "LVM2"
    assert json.loads(top["identifiers"])["vg"] == facts["vg_name"]
    for lv, lv_facts in facts["logical_volumes"].items():
        vol = vols[f"LVM2 {facts['vg_name']}/{lv}"]
        assert vol["kind"] == "logical" and vol["length"] == lv_facts["size"]
        assert json.loads(vol["chain"])[0][3] == lv
        assert len(lv_facts["segments"]) == int(vol["description"].split(", ")[1].split()[0])
    rows = query(case, "SELECT v.description, f.path, f.size, f.md5, f.sha256, f.status"
                       " FROM files f JOIN volumes v ON v.volume_id = f.volume_id"
                       " WHERE f.meta_type = 'file' AND f.status = 'ok'")  # fmt: skip
    for lv, lv_facts in facts["logical_volumes"].items():
        got = {r["path"]: r for r in rows if r["description"].startswith(
            f"LVM2 {facts['vg_name']}/{lv},")}  # fmt: skip
        for path, f in lv_facts["files"].items():
            assert (got[path]["size"], got[path]["md5"], got[path]["sha256"]) == (
                f["size"], f["md5"], f["sha256"]), (lv, path)  # fmt: skip


def test_fs_backend_forces_a_walker(images: dict[str, Path], tmp_path: Path) -> None:
    image = images["luks2.raw.gz"]
    unlocks = _unlock(f"*=password:{PASSPHRASE.decode()}")
    case = _scan(tmp_path, image, unlocks=unlocks, fs_backends=(("1", "xfs"),))
    (fs,) = query(case, "SELECT walker, status, error FROM filesystems")
    assert fs["walker"] is None and fs["status"] == "error" and fs["error"].startswith("xfs:")
    (tmp_path / "b").mkdir()
    case = _scan(tmp_path / "b", image, unlocks=unlocks, fs_backends=(("*", "tsk"),))
    assert query(case, "SELECT walker FROM filesystems")[0]["walker"] == "tsk"


def test_fs_backend_unknown_walker_is_a_usage_error(tmp_path: Path) -> None:
    run = subprocess.run([EXAMKIT, "scan", "-c", str(tmp_path / "c"),
                          str(tmp_path / "none.raw"), "--fs-backend", "zfs"],
                         capture_output=True, text=True, check=False)  # fmt: skip
    assert run.returncode == 2 and "no file-system walker named 'zfs'" in run.stderr
    assert "Traceback" not in run.stderr


def test_snapshot_copies_are_marked(tmp_path: Path) -> None:
    """The shadow-copy rule on case rows (no VSS fixture can be made here): a snapshot's file
    with the live file's path and content points at it; changed or deleted ones do not."""
    from examkit.case import Case

    path = tmp_path / "case.sqlite"
    with Case.create(path, examiner="pytest") as case, case.transaction() as conn:
        conn.execute("INSERT INTO evidence (evidence_id, container, source_paths, media_size,"
                     " added_utc) VALUES ('E', 'raw', '[]', 1, 'x')")  # fmt: skip
        for vid, idx, kind, parent in ((1, 0, "whole", None), (2, 1, "snapshot", 1),
                                       (3, 2, "snapshot", 1)):  # fmt: skip
            conn.execute("INSERT INTO volumes (volume_id, evidence_id, idx, kind, start_offset,"
                         " length, parent_volume_id) VALUES (?, 'E', ?, ?, 0, 1, ?)",
                         (vid, idx, kind, parent))  # fmt: skip
            conn.execute("INSERT INTO filesystems (filesystem_id, evidence_id, volume_id, offset,"
                         " status) VALUES (?, 'E', ?, 0, 'ok')", (vid, vid))  # fmt: skip
        rows = [  # file_id, filesystem, path, sha256
            (1, 1, "/a", "aa"), (2, 1, "/b", "bb"),
            (3, 2, "/a", "aa"), (4, 2, "/b", "b0"), (5, 2, "/gone", "cc"),
            (6, 3, "/gone", "cc"), (7, 3, "/b", "b0"),
        ]  # fmt: skip
        for fid, fs, p, sha in rows:
            conn.execute("INSERT INTO files (file_id, evidence_id, volume_id, filesystem_id, seq,"
                         " path, name, size, allocated, state, status, sha256) VALUES"
                         " (?, 'E', ?, ?, ?, ?, ?, 1, 1, 'allocated', 'ok', ?)",
                         (fid, fs, fs, fid, p, p[1:], sha))  # fmt: skip
    with Case.open(path) as case:
        assert mark_snapshot_copies(case, "E") == 3
        marked = dict(case.conn.execute("SELECT file_id, same_content_as FROM files"))
    assert marked == {1: None, 2: None, 3: 1, 4: None, 5: None, 6: 5, 7: 4}


def test_hits_fold_snapshot_copies(tmp_path: Path) -> None:
    """A flagged file seen unchanged in shadow copies is one hit saying in how many more
    snapshots it was seen; a changed or deleted-then-surviving copy stays a hit of its own."""
    import json

    from typer.testing import CliRunner

    from examkit.case import Case
    from examkit.cli.app import app

    test_snapshot_copies_are_marked(tmp_path)  # the case of the rule above, marked
    path = tmp_path / "case.sqlite"
    with Case.open(path) as case, case.transaction() as conn:
        conn.execute(
            "INSERT INTO hashsets (hashset_id, name, kind, format, source_name, source_sha256,"
            " entries, algorithms, imported_utc, first_used_utc)"
            " VALUES (1, 'bad', 'known_bad', 'md5sum', 's', 'x', 3, '{}', 'x', 'x')"
        )
        for fid in range(1, 8):  # every file is known-bad
            conn.execute("INSERT INTO matches (file_id, hashset_id, kind, algorithm, digest,"
                         " entry, alert, matched_utc) VALUES (?, 1, 'known_bad', 'sha256', ?,"
                         " 0, 1, 'x')", (fid, f"{fid:064x}"))  # fmt: skip
    runner = CliRunner()
    folded = json.loads(runner.invoke(app, ["hits", str(path), "--json"]).stdout)
    assert {r["file_id"]: r["snapshot_copies"] for r in folded} == {1: 1, 2: 0, 4: 1, 5: 1}
    every = json.loads(runner.invoke(app, ["hits", str(path), "--json", "--all-copies"]).stdout)
    assert sorted(r["file_id"] for r in every) == list(range(1, 8))
    table = runner.invoke(app, ["hits", str(path)], env={"COLUMNS": "250"}).stdout
    assert "1 snapshot " in table and "4 known-bad hits" in table
