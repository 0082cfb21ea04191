"""Perceptual hashing and near matching: a real image, Meta's reference PDQ as the oracle.

The fixture ``images/perceptual.raw.gz`` (tests/fixtures/build_perceptual_image.py)
holds edited copies of eight synthetic originals whose PDQ hashes (computed by
``pdqhash`` on the full-resolution originals) form a known-bad list, plus
unrelated images and images that cannot be hashed. ``images/perceptual.json``
says what each path is.
"""

from __future__ import annotations

import io
import itertools
import json
import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from examkit.hashsets import Library
from examkit.matching import NearOptions
from examkit.perceptual import hamming_hex, hash_image
from examkit.plugins import registry
from examkit.scan import ScanOptions, scan
from tests.fixtures.synthetic_images import EDITS, encode, photo, reopen

FIXTURES = Path(__file__).parent / "fixtures" / "images"
PLAN: dict[str, dict[str, Any]] = json.loads((FIXTURES / "perceptual.json").read_text())
KNOWN_BAD = FIXTURES / "perceptual-known-bad.pdq"


def reference_pdq(image: Image.Image) -> tuple[str, int]:
    """PDQ by Meta's reference code on the full-resolution pixels (the oracle)."""
    import pdqhash

    vector, quality = pdqhash.compute(np.asarray(image.convert("RGB"), dtype=np.uint8))
    return np.packbits(np.asarray(vector, np.uint8)).tobytes().hex(), int(quality)


@pytest.fixture(scope="module")
def scanned(fixture_images: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("perceptual")
    library = Library(work / "library")
    library.import_set(KNOWN_BAD, "series-a", "known-bad", formats=registry().hashset_formats)
    case = work / "case.sqlite"
    options = ScanOptions(workers=2, hashset_dir=str(work / "library"), confirm_media=False)
    summary = scan(case, [fixture_images / "perceptual.raw"], options=options, argv=["pytest"])
    conn = sqlite3.connect(case)
    conn.row_factory = sqlite3.Row
    files = {r["path"]: dict(r) for r in conn.execute("SELECT * FROM files")}
    matches = [dict(r) for r in conn.execute("SELECT * FROM matches")]
    conn.close()
    return {"summary": summary, "files": files, "matches": matches, "case": case,
            "image": fixture_images / "perceptual.raw", "work": work}  # fmt: skip


def test_copies_are_flagged_with_their_distance_and_nothing_else_is(
    scanned: dict[str, Any],
) -> None:
    """Done means: re-encoded, resized and grayscale copies (and an animation whose first
    frame is a copy) flagged by PDQ distance; none of the unrelated images."""
    assert scanned["summary"].status == "complete"
    files, matches = scanned["files"], scanned["matches"]
    copies = {p for p, facts in PLAN.items() if facts["role"] == "copy"}
    flagged = {p for p, row in files.items() if row["flagged"]}
    assert len(copies) == 25
    assert flagged == copies
    by_file = {files_path: [] for files_path in copies}  # type: dict[str, list[dict[str, Any]]]
    path_of = {row["file_id"]: p for p, row in files.items()}
    for m in matches:
        by_file[path_of[m["file_id"]]].append(m)
    for path in copies:
        (match,) = by_file[path]  # one entry: its own original, not another
        facts = PLAN[path]
        assert match["algorithm"] == "pdq" and match["entry_name"] == facts["original"]
        # the recorded distance is the distance between the recorded and the listed hash
        assert match["distance"] == hamming_hex(files[path]["pdq"], facts["original_pdq"])
        assert 0 <= match["distance"] <= NearOptions.pdq_threshold
        assert match["digest"] == files[path]["pdq"]
        assert files[path]["pdq_quality"] >= NearOptions.pdq_min_quality


def test_every_image_is_hashed_by_type_and_bad_ones_get_a_status(scanned: dict[str, Any]) -> None:
    files = scanned["files"]
    for path, facts in PLAN.items():
        row = files[path]
        if facts["role"] in ("copy", "unrelated"):
            assert row["image_status"] == "ok", (path, row["image_detail"])
            assert len(row["pdq"]) == 64 and len(row["phash"]) == 16 and len(row["dhash"]) == 16
        elif facts["role"] == "broken":
            assert row["image_status"] == facts["status"], (path, row["image_detail"])
            assert row["pdq"] is None and row["image_detail"]
            assert row["status"] == "ok"  # the crypto hashes are there all the same
        else:  # a text file named .jpg: typed by content, not an image
            assert row["image_status"] is None and row["pdq"] is None
    heic = files["/Pictures/misc/phone.heic"]
    assert heic["mime"] in ("image/heic", "image/heif") and heic["image_status"] == "ok"
    assert files["/Downloads/photo.dat"]["mime"] == "image/png"  # by type, not extension
    bomb = files["/Downloads/huge.png"]
    assert "96000000" in bomb["image_detail"].replace(",", "")
    assert (bomb["image_width"], bomb["image_height"]) == (None, None)
    animated = files["/Downloads/animation.gif"]
    assert (animated["image_width"], animated["image_height"]) == (240, 180)


def test_reduced_decode_stays_within_10_bits_of_reference_pdq(scanned: dict[str, Any]) -> None:
    """Each hashed file, extracted with TSK's icat and hashed by the reference code at full
    resolution, gives a PDQ within 10 bits of what the scan recorded."""
    image, files = scanned["image"], scanned["files"]
    compared = 0
    for path, row in files.items():
        if row["image_status"] != "ok" or path.endswith(".heic"):
            continue
        inode = row["inode"]
        data = subprocess.run(["icat", str(image), str(inode)], capture_output=True,
                              check=True).stdout  # fmt: skip
        reference, _quality = reference_pdq(Image.open(io.BytesIO(data)))
        assert hamming_hex(reference, row["pdq"]) <= 10, path
        compared += 1
    assert compared >= 70


def test_draft_decode_of_large_jpegs_is_faithful() -> None:
    """JPEG draft mode (DCT scaling) on large photos: PDQ within 10 bits of the full decode
    for at least 95% of images (PDQ's own bar for a correct implementation)."""
    hashers = registry().image_hashers
    within = []
    for seed in range(24):
        data = encode(photo(5000 + seed, 1600 + 64 * (seed % 4), 1200), "JPEG", quality=88)
        drafted = hash_image(data, "image/jpeg", hashers)
        assert drafted.status == "ok"
        full, _quality = reference_pdq(reopen(data))
        within.append(hamming_hex(drafted.hashes["pdq"][0], full) <= 10)
    assert sum(within) / len(within) >= 0.95


def test_robustness_of_edits_and_no_false_positives() -> None:
    """Edits that must match do at the default threshold; 10,000 unrelated pairs never do."""
    hashers = registry().image_hashers
    threshold = NearOptions.pdq_threshold
    for seed in range(10):
        data = encode(photo(7000 + seed), "JPEG", quality=90)
        original = hash_image(data, "image/jpeg", hashers).hashes["pdq"][0]
        for name, (edit, must_match) in EDITS.items():
            copy = hash_image(encode(edit(reopen(data)), "PNG"), "image/png", hashers)
            distance = hamming_hex(original, copy.hashes["pdq"][0])
            if must_match:
                assert distance <= threshold, (seed, name, distance)
    unrelated = [
        hash_image(encode(photo(8000 + s, 160, 120), "PNG"), "image/png", hashers).hashes["pdq"][0]
        for s in range(142)
    ]
    pairs = list(itertools.combinations(unrelated, 2))
    assert len(pairs) >= 10_000
    assert sum(hamming_hex(a, b) <= threshold for a, b in pairs) == 0


def test_no_perceptual_skips_images_and_rematch_finds_them_later(
    scanned: dict[str, Any], tmp_path: Path
) -> None:
    from examkit.rematch import rematch

    case = tmp_path / "case.sqlite"
    library = scanned["work"] / "library"
    options = ScanOptions(workers=1, hashset_dir=str(library), confirm_media=False,
                          perceptual=False, near=NearOptions(enabled=False))  # fmt: skip
    scan(case, [scanned["image"]], options=options, argv=["pytest"])
    conn = sqlite3.connect(case)
    assert conn.execute("SELECT count(*) FROM files WHERE pdq IS NOT NULL").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM files WHERE flagged = 1").fetchone()[0] == 0
    conn.close()
    # the hashes from the first case, matched again with a tighter threshold: fewer hits
    summary = rematch(scanned["case"], None, "pytest", library, ["pytest"],
                      NearOptions(pdq_threshold=4))  # fmt: skip
    assert summary.matches == 0  # a match run never removes what an earlier run recorded
    conn = sqlite3.connect(scanned["case"])
    runs = conn.execute("SELECT options FROM runs ORDER BY run_id").fetchall()
    conn.close()
    assert json.loads(runs[-1][0])["near"]["pdq_threshold"] == 4


def test_matches_on_a_scan_never_show_a_flagged_name(scanned: dict[str, Any]) -> None:
    from typer.testing import CliRunner

    from examkit.cli.app import app

    result = CliRunner().invoke(app, ["hits", str(scanned["case"])])
    assert result.exit_code == 0, result.output
    assert "IMG_" not in result.output and "animation" not in result.output
    assert "pdq" in result.output


def test_phash_is_a_second_signal_from_a_vics_set(scanned: dict[str, Any], tmp_path: Path) -> None:
    """A VICS 2.0 export carrying pHash (and victim identified) for two originals: their
    copies are flagged by pHash distance with the entry's metadata; nothing else is."""
    import imagehash

    from examkit.rematch import rematch

    originals = {}
    for path, facts in PLAN.items():
        if facts["role"] == "copy" and facts["original"] in ("series-A-001", "series-A-002"):
            originals.setdefault(facts["original"], []).append(path)
    media = []
    for n, label in enumerate(sorted(originals)):
        seed = 1000 + int(label[-3:]) - 1  # build_perceptual_image.ORIGINALS
        value = str(imagehash.phash(photo(seed, 480, 360)))
        media.append({"MediaID": 900 + n, "Category": 1, "MD5": f"{n + 1:032x}",
                      "pHash": value, "VictimIdentified": True, "Series": "SERIES-PH",
                      "MediaFiles": [{"FileName": f"{label}.jpg"}]})  # fmt: skip
    doc = {"@odata.context": "http://github.com/VICSDATAMODEL/ProjectVic/DataModels/2.0.xml/US/"
           "$metadata#Cases", "value": [{"CaseID": "PH-1", "Media": media}]}  # fmt: skip
    source = tmp_path / "vics-phash.json"
    source.write_text(json.dumps(doc))
    library = tmp_path / "library"
    info = Library(library).import_set(source, "vics-ph", "known-bad",
                                       formats=registry().hashset_formats).info  # fmt: skip
    assert info.algorithms["phash"]["count"] == 2
    case = tmp_path / "case.sqlite"  # a copy: the module's case stays as the scan left it
    for suffix in ("", "-wal"):
        if Path(str(scanned["case"]) + suffix).exists():
            shutil.copy(str(scanned["case"]) + suffix, str(case) + suffix)
    summary = rematch(case, ["vics-ph"], "pytest", library, ["pytest"])
    assert summary.matches > 0
    conn = sqlite3.connect(case)
    rows = conn.execute(
        "SELECT f.path, m.distance, m.victim_identified, m.series, f.phash, m.digest"
        " FROM matches m JOIN files f USING (file_id) JOIN hashsets h USING (hashset_id)"
        " WHERE h.name = 'vics-ph' AND m.algorithm = 'phash'"
    ).fetchall()
    conn.close()
    expected = {p for paths in originals.values() for p in paths}
    assert {r[0] for r in rows} == expected
    for _path, distance, victim, series, phash, digest in rows:
        assert digest == phash and distance <= NearOptions.phash_threshold
        assert victim == 1 and series == "SERIES-PH"
