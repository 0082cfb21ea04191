"""BitLocker, FileVault 2 and Volume Shadow Copies through stand-ins for libbde, libfvde
and libvshadow.

No tool on Linux writes a BitLocker or Core Storage volume or a shadow copy, and the corpus has
none (docs/volumes.md), so the libraries' own decryption and store reading are
untested here. These tests replace ``pybde`` / ``pyfvde`` / ``pyvshadow`` in the plugins
with small objects offering the same calls, over real fixture file systems, and
check everything examkit does around them: the probe's identifiers, locked and
unlocked volumes in the case and the custody log, secrets kept out of the case,
the decrypted or snapshot file system walked and hashed (oracle: the plans
``make_tree.py`` wrote when the fixtures were built), and the shadow-copy rule
(each content counted once, a file only in a snapshot found). ``workers=0``: the
stand-ins live in this process.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from examkit.layers import parse_unlock
from examkit.scan import ScanOptions
from examkit_plugins.volumes import bitlocker, filevault, shadow_copies
from tests.conftest import FIXTURES, do_scan
from tests.conftest import dict_rows as _rows

PLANS = FIXTURES / "plans"
PASSWORD = "stand-in password"
KEY = bytes(range(1, 256))  # the stand-in cipher: XOR with this, repeated
GUID = "5e3a1b7c-0000-4000-8000-00000000b17c"
RECOVERY_ID = "9f1e2d3c-0000-4000-8000-0000000000aa"


def _present(plan: str) -> dict[str, str]:
    """Path -> SHA-256 of every file the plan left in place (oracle: make_tree.py)."""
    data = json.loads((PLANS / plan).read_text("utf-8"))
    gone = set(data.get("delete", []))
    dirs = tuple(f"{d}/" for d in data.get("deleted_dirs", []))
    return {f"/{f['path']}": f["sha256"] for f in data["files"]
            if f["path"] not in gone and not f["path"].startswith(dirs)}  # fmt: skip


def _xor(data: bytes, at: int) -> bytes:
    key = (KEY * (len(data) // len(KEY) + 2))[at % len(KEY) :][: len(data)]
    return bytes(a ^ b for a, b in zip(data, key, strict=True))


# -- BitLocker -----------------------------------------------------------------------------
class _Protector:
    def __init__(self, kind: int, ident: str) -> None:
        self.type, self.identifier = kind, ident


class _BdeVolume:
    """libbde's volume calls; unlocks with PASSWORD; the data is XOR-"encrypted"."""

    def __init__(self) -> None:
        self._password: str | None = None
        self._file: Any = None
        self._locked = True

    def set_password(self, password: str) -> None:
        self._password = password

    def set_recovery_password(self, key: str) -> None:
        self._password = None

    def read_startup_key(self, path: str) -> None:
        self._password = None

    def open_file_object(self, file: Any) -> None:
        self._file = file
        file.seek(0)
        if file.read(11)[3:11] != b"-FVE-FS-":
            raise OSError("pybde_volume_open_file_object: unsupported signature.")

    def get_volume_identifier(self) -> str:
        return GUID

    @property
    def number_of_key_protectors(self) -> int:
        return 2

    def get_key_protector(self, index: int) -> _Protector:
        return [_Protector(0x2000, "0b0b0b0b-0000-4000-8000-000000000001"),
                _Protector(0x0800, RECOVERY_ID)][index]  # fmt: skip

    def get_encryption_method(self) -> int:
        return 0x8004  # XTS-AES 128

    def is_locked(self) -> bool:
        return self._locked

    def unlock(self) -> bool:
        self._locked = self._password != PASSWORD
        return not self._locked

    def get_size(self) -> int:
        return int(self._file.get_size()) - 512

    def read_buffer_at_offset(self, size: int, offset: int) -> bytes:
        assert not self._locked
        self._file.seek(512 + offset)
        return _xor(self._file.read(size), offset)

    def close(self) -> None:
        pass


@pytest.fixture
def stand_in_bde(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = SimpleNamespace(volume=_BdeVolume, get_version=lambda: "stand-in",
                           check_volume_signature_file_object=lambda f: True)  # fmt: skip
    monkeypatch.setattr(bitlocker, "pybde", fake)


@pytest.fixture(scope="module")
def bitlocker_image(fixture_images: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 512-byte BitLocker-looking header, then the ext4 fixture, XOR-"encrypted"."""
    header = bytearray(512)
    header[3:11] = b"-FVE-FS-"
    image = tmp_path_factory.mktemp("bde") / "bitlocker.raw"
    image.write_bytes(bytes(header) + _xor((fixture_images / "ext4.raw").read_bytes(), 0))
    return image


@pytest.mark.parametrize("secret", [None, "password:wrong", f"password:{PASSWORD}"])
def test_bitlocker_locked_and_unlocked(
    stand_in_bde: None, bitlocker_image: Path, tmp_path: Path, secret: str | None
) -> None:
    unlocks = () if secret is None else (parse_unlock(f"{GUID}={secret}"),)
    case = tmp_path / "case.sqlite"
    summary = do_scan(case, [bitlocker_image], options=ScanOptions(
        workers=0, verify_media=False, perceptual=False, unlocks=unlocks))  # fmt: skip
    assert summary.status == "complete"
    (layer,) = _rows(case, "SELECT * FROM volumes WHERE layer = 'bitlocker'")
    ids = json.loads(layer["identifiers"])
    assert ids["guid"] == GUID and RECOVERY_ID in ids.values()  # the key an examiner asks for
    assert "recovery password {" + RECOVERY_ID + "}" in layer["layer_detail"]
    custody = _rows(case, "SELECT action, details FROM custody_log"
                          " WHERE action LIKE 'volume_%locked'")  # fmt: skip
    files = {r["path"]: r["sha256"] for r in _rows(case, "SELECT path, sha256 FROM files")}
    if secret == f"password:{PASSWORD}":
        assert (layer["locked"], layer["unlocked_with"]) == (0, "password")
        assert [c["action"] for c in custody] == ["volume_unlocked"]
        expected = _present("ext4.json")
        assert {p: files.get(p) for p in expected} == expected
    else:
        assert layer["locked"] == 1 and layer["unlocked_with"] is None
        assert [c["action"] for c in custody] == ["volume_locked"]
        assert not any(p in files for p in _present("ext4.json"))
    for path in tmp_path.glob("case.sqlite*"):
        assert PASSWORD.encode() not in path.read_bytes()


# -- FileVault 2 (Core Storage) -------------------------------------------------------------
class _FvdeVolume(_BdeVolume):
    """libfvde's volume calls (the same as libbde's that the plugin uses)."""

    def open_file_object(self, file: Any) -> None:
        self._file = file
        file.seek(88)
        if file.read(2) != b"CS":
            raise OSError("pyfvde_volume_open_file_object: unsupported signature.")


@pytest.mark.parametrize("secret", [None, f"password:{PASSWORD}"])
def test_filevault_locked_and_unlocked(
    fixture_images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, secret: str | None
) -> None:
    fake = SimpleNamespace(volume=_FvdeVolume, get_version=lambda: "stand-in",
                           check_volume_signature_file_object=lambda f: True)  # fmt: skip
    monkeypatch.setattr(filevault, "pyfvde", fake)
    header = bytearray(512)
    header[88:90] = b"CS"
    image = tmp_path / "corestorage.raw"
    image.write_bytes(bytes(header) + _xor((fixture_images / "ext4.raw").read_bytes(), 0))
    unlocks = () if secret is None else (parse_unlock(f"*={secret}"),)
    case = tmp_path / "case.sqlite"
    summary = do_scan(case, [image], options=ScanOptions(
        workers=0, verify_media=False, perceptual=False, unlocks=unlocks))  # fmt: skip
    assert summary.status == "complete"
    (layer,) = _rows(case, "SELECT * FROM volumes WHERE layer = 'filevault'")
    files = {r["path"]: r["sha256"] for r in _rows(case, "SELECT path, sha256 FROM files")}
    expected = _present("ext4.json")
    if secret:
        assert (layer["locked"], layer["unlocked_with"]) == (0, "password")
        assert {p: files.get(p) for p in expected} == expected
    else:
        assert layer["locked"] == 1 and not any(p in files for p in expected)
    for path in tmp_path.glob("case.sqlite*"):
        assert PASSWORD.encode() not in path.read_bytes()


# -- Volume Shadow Copies ------------------------------------------------------------------
class _Store:
    def __init__(self, data: bytes, index: int) -> None:
        self._data, self.volume_size = data, len(data)
        self.identifier = f"0000000{index}-0000-4000-8000-00000000055{index}"

    def get_creation_time(self) -> str:
        return f"2026-01-0{self.volume_size % 7 + 1} 12:00:00"

    def read_buffer_at_offset(self, size: int, offset: int) -> bytes:
        return self._data[offset : offset + size]


def stand_in_vss(stores: list[bytes]) -> Any:
    class Volume:
        def open_file_object(self, file: Any) -> None:
            file.seek(3)
            if file.read(8) != b"NTFS    ":
                raise OSError("no catalog")

        @property
        def number_of_stores(self) -> int:
            return len(stores)

        def get_store(self, index: int) -> _Store:
            return _Store(stores[index], index)

        def close(self) -> None:
            pass

    return SimpleNamespace(volume=Volume, get_version=lambda: "stand-in")


def test_shadow_copies_each_content_once_and_files_only_in_a_snapshot(
    fixture_images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Live volume: the NTFS fixture. Store 1 holds the same volume (every file the same:
    folded into the live rows); store 2 holds another NTFS volume (the demo disk's), whose
    files exist only in that snapshot, as a deleted file that survives in a shadow copy."""
    live = (fixture_images / "ntfs.raw").read_bytes()
    demo = (fixture_images / "demo-disk.raw").read_bytes()[2048 * 512 : 18432 * 512]
    monkeypatch.setattr(shadow_copies, "pyvshadow", stand_in_vss([live, demo]))
    case = tmp_path / "case.sqlite"
    summary = do_scan(case, [fixture_images / "ntfs.raw"], options=ScanOptions(
        workers=0, verify_media=False, perceptual=False, shadow_copies=True))  # fmt: skip
    assert summary.status == "complete"
    volumes = _rows(case, "SELECT volume_id, kind, parent_volume_id FROM volumes ORDER BY idx")
    assert [v["kind"] for v in volumes] == ["whole", "snapshot", "snapshot"]
    assert {v["parent_volume_id"] for v in volumes[1:]} == {volumes[0]["volume_id"]}
    rows = _rows(case, "SELECT file_id, volume_id, path, stream, sha256, same_content_as"
                       " FROM files WHERE status = 'ok'")  # fmt: skip
    by_volume: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        by_volume.setdefault(r["volume_id"], []).append(r)
    first, second, third = (by_volume[v["volume_id"]] for v in volumes)
    live_ids = {(r["path"], r["stream"]): r["file_id"] for r in first}
    assert all(r["same_content_as"] is None for r in first)
    assert {r["same_content_as"] for r in second} == set(live_ids.values())  # all folded
    assert all(r["same_content_as"] == live_ids[(r["path"], r["stream"])] for r in second)
    demo_files = _present("demo-p1.json")
    in_snapshot = {r["path"]: r["sha256"] for r in third if r["stream"] is None}
    assert {p: in_snapshot.get(p) for p in demo_files} == demo_files
    live_sha = {(r["path"], r["stream"]): r["sha256"] for r in first}
    for r in third:  # the rule: same path and stream and the same content as a live file
        key = (r["path"], r["stream"])
        same = live_sha.get(key) == r["sha256"]
        assert r["same_content_as"] == (live_ids[key] if same else None), r["path"]
    assert sum(r["same_content_as"] is None for r in third) >= len(demo_files)
    # listings show each content once unless asked for every copy
    from typer.testing import CliRunner

    from examkit.cli.app import app

    runner = CliRunner()
    listed = json.loads(runner.invoke(app, ["files", str(case), "--json"]).stdout)
    every = json.loads(runner.invoke(app, ["files", str(case), "--json", "--all-copies"]).stdout)
    copies = {r["file_id"] for r in _rows(case, "SELECT file_id FROM files"
                                               " WHERE same_content_as IS NOT NULL")}  # fmt: skip
    assert copies and not copies & {r["file_id"] for r in listed}
    assert {r["file_id"] for r in every} == {r["file_id"] for r in listed} | copies
