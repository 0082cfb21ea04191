"""A short fuzzing run in every test suite (``make fuzz`` runs hundreds): mutated images
scan without a hang, a crash of the scan or a lost row (see tests/fuzz.py)."""

from __future__ import annotations

from pathlib import Path

from tests import fuzz


def test_mutated_images_never_hang_crash_or_lose_rows(tmp_path: Path) -> None:
    report = fuzz.run(count=8, seed=424242, work=tmp_path, timeout=90)
    assert report.tried == 8
    assert report.violations == []
    assert report.complete + report.failed == 8  # every run ended with a final status
