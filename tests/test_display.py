"""The display gate: evidence strings can never act on a terminal."""

from __future__ import annotations

import io

from rich.console import Console

from examkit.cli.render import cell
from examkit.display import WITHHELD, DisplayPolicy, decode_name, safe_text


def test_escape_sequences_are_shown_not_executed() -> None:
    hostile = "a\x1b[31mred\x1b[0m\x1b]52;c;ZXZpbA==\x07b"
    shown = safe_text(hostile)
    assert "\x1b" not in shown and "\x07" not in shown
    assert shown == "a\\x1b[31mred\\x1b[0m\\x1b]52;c;ZXZpbA==\\x07b"


def test_bidi_newlines_nul_and_c1_controls() -> None:
    assert safe_text("evil\u202egnp.exe") == "evil\\u202egnp.exe"
    assert safe_text("two\nlines\r\x00") == "two\\nlines\\r\\x00"
    assert safe_text("c1\x9bcsi") == "c1\\x9bcsi"
    assert safe_text("zero\u200bwidth") == "zero\\u200bwidth"


def test_backslash_is_doubled_so_escapes_are_unambiguous() -> None:
    assert safe_text("a\\x41") == "a\\\\x41"


def test_invalid_utf8_bytes_are_shown_as_hex() -> None:
    assert safe_text(b"bad-\xff\xfe-name.txt") == "bad-\\xff\\xfe-name.txt"
    text, raw = decode_name(b"caf\xe9")
    assert raw == b"caf\xe9" and text == "caf\\xe9"
    assert decode_name("café".encode()) == ("café", None)


def test_unicode_names_are_kept() -> None:
    assert safe_text("入乡随俗 海外春节别样过法.txt") == "入乡随俗 海外春节别样过法.txt"


def test_rich_markup_in_evidence_is_printed_literally() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, color_system="truecolor", width=200)
    console.print(cell("[bold red]x[/bold red] [link=http://example.invalid]y[/link]"))
    output = buffer.getvalue()
    assert "[bold red]x[/bold red]" in output
    assert "\x1b]8;" not in output  # no hyperlink escape was emitted


def test_flagged_names_are_withheld_unless_asked() -> None:
    assert DisplayPolicy().name("/secret/name.jpg", flagged=True) == WITHHELD
    assert DisplayPolicy().name("/plain.txt", flagged=False) == "/plain.txt"
    assert DisplayPolicy(show_flagged_names=True).name("/a\x1b.jpg", flagged=True) == "/a\\x1b.jpg"


def test_long_strings_are_cut() -> None:
    assert safe_text("x" * 50, max_len=10) == "x" * 9 + "…"
