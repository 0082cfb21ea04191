"""The scan's progress bar, drawn as on an examiner's terminal."""

from __future__ import annotations

import io
from pathlib import Path

import pytest


def test_a_scan_on_a_terminal_draws_its_progress(
    fixture_images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bar goes to the error console, a terminal here: rich's live display is handed
    that console itself (the CLI makes its consoles on first use, see cli/render.py)."""
    from rich.console import Console

    from examkit.cli import scan_cmd
    from examkit.cli.app import main
    from examkit.cli.render import DeferredConsole

    screen = io.StringIO()
    terminal = DeferredConsole(lambda: Console(file=screen, force_terminal=True, width=120))
    monkeypatch.setattr(scan_cmd, "err", terminal)
    code = main(["scan", str(fixture_images / "fat16.raw"), "--case", str(tmp_path / "c.sqlite"),
                 "--workers", "1", "--no-perceptual"])  # fmt: skip
    assert code == 0
    drawn = screen.getvalue()
    assert "hashing" in drawn and "files" in drawn, drawn[-500:]
