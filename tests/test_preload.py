"""What the scan's fork server loads before it forks workers (``examkit/preload.py``).

Every module it imports is on the critical path of each scan's start, and every
worker inherits it; image libraries are imported by a worker at its first image
instead (on 2 cores that is cheaper than loading them before the first unit).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PROBE = """
import json, sys
import examkit.preload
print(json.dumps(sorted(m for m in sys.modules if "." not in m)))
"""


def _preloaded() -> set[str]:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_preload_loads_evidence_libraries_not_image_libraries() -> None:
    loaded = _preloaded()
    assert {"pytsk3", "magic", "examkit", "examkit_plugins"} <= loaded
    # numpy (~0.1 s), PIL and imagehash/scipy (~0.3 s) are left to the workers
    assert not loaded & {"numpy", "PIL", "imagehash", "scipy", "dask", "distributed"}


WORKERS = """
import json, sys
import examkit.preload
from examkit.plugins import registry
reg = registry()
kinds = ("containers", "volume_systems", "volume_layers", "filesystems", "hashers",
         "image_hashers", "archive_formats", "hashset_formats", "report_formats")
print(json.dumps([{k: len(reg.all(k)) for k in kinds},
                  sorted(m for m in sys.modules if m.startswith("examkit_plugins.")
                         and (".hashsets." in m or ".reports." in m))]))
"""


def test_the_workers_registry_leaves_out_what_only_the_parent_uses() -> None:
    """A pool's workers open evidence and hash it; reading hash-set files and writing
    reports is the parent's work, so the fork server does not import those plugins."""
    out = subprocess.run([sys.executable, "-c", WORKERS], capture_output=True, text=True,
                         check=True)  # fmt: skip
    counts, imported = json.loads(out.stdout.strip().splitlines()[-1])
    assert counts["hashset_formats"] == counts["report_formats"] == 0
    assert imported == []
    for kind in ("containers", "volume_systems", "volume_layers", "filesystems", "hashers",
                 "image_hashers", "archive_formats"):  # fmt: skip
        assert counts[kind] >= 1, kind
    from examkit.plugins import registry  # this process (a parent) has them all

    assert registry().hashset_formats and registry().report_formats


LISTING = """
import json, sys
from examkit.cli.entry import main
code = main(["scan", sys.argv[1], "--case", sys.argv[2], "--workers", "0", "--no-verify",
             "--no-perceptual", "--json"])
print(json.dumps([code, "sqlite_utils" in sys.modules, "rich" in sys.modules]))
"""


def test_a_scan_does_not_import_sqlite_utils(fixture_images: Path, tmp_path: Path) -> None:
    """A scan writes and reads its case through the plain connection: importing sqlite-utils
    (~0.1 s) would delay the listing worker's first entry and the parent's start. With
    ``--json`` it draws nothing either, so rich (~50 ms) is not imported."""
    case = tmp_path / "case.sqlite"
    out = subprocess.run([sys.executable, "-c", LISTING, str(fixture_images / "ntfs.raw"),
                          str(case)], capture_output=True, text=True, check=True)  # fmt: skip
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [0, False, False]


PARENT = """
import json, sys
import examkit.cli.app
from examkit.plugins import registry
from examkit.hashdb import HashSetIndex
registry()
before = sorted(m for m in ("numpy", "cryptography", "examkit_plugins.reports.court_model")
                if m in sys.modules)
from examkit import hashdb
hashdb.np.frombuffer(b"ab", "u1")  # first use: imported now
print(json.dumps([before, "numpy" in sys.modules]))
"""


def test_the_cli_loads_heavy_modules_only_when_needed() -> None:
    """A scan's parent (the CLI, its plugins) hands out its first streams before it
    imports numpy (~0.1 s), cryptography's ciphers (LUKS, ~20 ms) or the court report's
    model (~10 ms); the hash-set code imports numpy on first use."""
    out = subprocess.run([sys.executable, "-c", PARENT], capture_output=True, text=True,
                         check=True)  # fmt: skip
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [[], True]


PREPARE = """
import json, sys, time
from types import SimpleNamespace
from examkit import native
from examkit.matching import Matcher

def case_set(*algorithms):  # what prepare() reads of a set: the algorithms it lists
    return SimpleNamespace(index=SimpleNamespace(manifest={"algorithms": list(algorithms)}))

def imported_soon():
    deadline = time.monotonic() + 5
    while "numpy" not in sys.modules and time.monotonic() < deadline:
        time.sleep(0.01)
    return "numpy" in sys.modules

Matcher([]).prepare()  # no sets: nothing to look up, nothing imported
Matcher([case_set("md5", "pdq")]).prepare(perceptual=False)  # no perceptual hashes computed
Matcher([case_set("md5", "sha1")]).prepare()  # exact digests: the compiled helper searches
time.sleep(0.2)
none = "numpy" in sys.modules
Matcher([case_set("md5", "pdq")]).prepare()  # near matching may need numpy
started = imported_soon()  # before any use of it in this thread
from examkit import matching
matching.np.frombuffer(b"ab", "u1")  # waits for the import if it is still running
print(json.dumps([none, started, native.helper() is not None]))
"""


def test_a_matcher_imports_numpy_before_its_first_lookup_only_if_it_needs_it() -> None:
    """The scan's parent calls ``Matcher.prepare`` as its listing starts: when its lookups
    will need numpy (near matching on a set holding perceptual hashes, or exact matching
    without the compiled helper), numpy is imported on a thread of its own while the parent
    waits for the first entries, not when the first results come back; otherwise never."""
    out = subprocess.run([sys.executable, "-c", PREPARE], capture_output=True, text=True,
                         check=True)  # fmt: skip
    none, started, helper = json.loads(out.stdout.strip().splitlines()[-1])
    assert started
    assert none == (not helper)  # with the helper built, none of the three imported numpy
