"""Plugins: first-party registration, validation, and third-party entry points."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from examkit.errors import PluginError
from examkit.hashing import Hasher
from examkit.hookspecs import hookimpl
from examkit.plugins import Registry, plugin_manager, registry


def test_first_party_plugins_are_loaded_in_priority_order() -> None:
    reg = registry()
    assert [c.name for c in reg.containers] == ["ewf", "qcow", "vhdi", "vmdk", "split-raw", "raw"]
    assert {h.name for h in reg.hashers} >= {"md5", "sha1", "sha256"}
    versions = reg.versions()
    assert "filesystems/tsk" in versions and "TSK" in versions["filesystems/tsk"]


def test_a_plugin_registering_the_wrong_type_is_refused() -> None:
    class Bad:
        @hookimpl
        def register_hashers(self, register):  # type: ignore[no-untyped-def]
            register(object())

    pm = plugin_manager(entry_points=False)
    pm.register(Bad())
    with pytest.raises(PluginError, match="registered a object as hashers") as info:
        Registry(pm)
    assert "must subclass examkit.hashing.Hasher" in info.value.hint


def test_duplicate_names_are_refused() -> None:
    class Dup:
        @hookimpl
        def register_hashers(self, register):  # type: ignore[no-untyped-def]
            class Md5Again(Hasher):
                name = "md5"

                def new(self):  # type: ignore[no-untyped-def]
                    raise NotImplementedError

            register(Md5Again())

    pm = plugin_manager(entry_points=False)
    pm.register(Dup())
    with pytest.raises(PluginError, match="two plugins"):
        Registry(pm)


def test_third_party_plugin_is_found_through_the_entry_point_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "examkit_blake2.py").write_text(
        textwrap.dedent(
            """
            import hashlib
            from examkit.hashing import Hasher
            from examkit.hookspecs import hookimpl

            class Blake2(Hasher):
                name = "blake2b"
                version = "1.2.3"
                def new(self):
                    return hashlib.blake2b()

            @hookimpl
            def register_hashers(register):
                register(Blake2())
            """
        )
    )
    dist = tmp_path / "examkit_blake2-1.2.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: examkit-blake2\nVersion: 1.2.3\n")
    (dist / "entry_points.txt").write_text("[examkit]\nblake2 = examkit_blake2\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        reg = Registry(plugin_manager())
        assert "blake2b" in [h.name for h in reg.hashers]
        assert reg.versions()["hashers/blake2b"] == "1.2.3 (examkit-blake2 1.2.3)"
    finally:
        sys.modules.pop("examkit_blake2", None)


def test_tsk_times_are_iso_8601_utc_with_four_digit_years() -> None:
    """The listing's time formatter against datetime's, over the whole range it covers;
    out of range (or 0, TSK's "not set") gives None."""
    import random
    from datetime import UTC, datetime

    from examkit_plugins.filesystems.tsk import utc

    rng = random.Random(5)
    first, last = -62135596800, 253402300799  # 0001-01-01 and 9999-12-31 23:59:59
    for seconds in [first, last, 1, -1, *(rng.randint(first, last) for _ in range(2000))]:
        if seconds == 0:
            continue
        want = datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")
        assert utc(seconds) == want
    assert utc(-54933884087) == "0229-03-20T03:45:13Z"  # strftime("%Y") gave "229-..."
    assert utc(1_600_000_000, 120_000_000) == "2020-09-13T12:26:40.12Z"
    assert utc(0) is None and utc(first - 1) is None and utc(last + 1) is None
    assert utc(2**63 - 1) is None
