"""Rendering helpers: every evidence string goes through the display gate as plain Text."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from examkit.display import DisplayPolicy, safe_text

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text


class DeferredConsole:
    """A rich ``Console`` made on first use: rich takes ~50 ms to import, which a command
    printing only JSON (``scan --json``, as labs' scripts run it) never needs. Attributes
    are the console's; ``get()`` is the console itself, for what rich is handed."""

    def __init__(self, make: Callable[[], Console]) -> None:
        self._make = make
        self._console: Console | None = None

    def get(self) -> Console:
        if self._console is None:
            self._console = self._make()
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.get(), name)


def _out() -> Console:
    from rich.console import Console

    # Piped or redirected output is not cut to 80 columns: tables keep one line per row.
    return Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)


def _err() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


out = DeferredConsole(_out)
err = DeferredConsole(_err)

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def cell(value: Any) -> Text:
    """A table cell: evidence text escaped by the gate and never read as markup."""
    from rich.text import Text

    if value is None:
        return Text("")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return Text(f"{value:,}" if isinstance(value, int) else f"{value}")
    return Text(safe_text(str(value)))


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    from rich.table import Table

    t = Table(title=title, title_justify="left", show_lines=False)
    for name in columns:
        t.add_column(name, overflow="fold")
    for row in rows:
        t.add_row(*(cell(v) for v in row))
    return t


def human_bytes(n: int | None) -> str:
    if n is None:
        return ""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def _json_safe(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def print_json(value: Any) -> None:
    """JSON on stdout. Strings are JSON-escaped (control characters cannot act on a terminal)."""
    sys.stdout.write(json.dumps(_json_safe(value), indent=2, ensure_ascii=True, sort_keys=True))
    sys.stdout.write("\n")


def write_csv(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """CSV on stdout: text through the display gate (escape sequences, bidi controls and line
    breaks shown as escapes), and cells a spreadsheet would run as formulas defused with a
    quote."""
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        values = []
        for col in columns:
            v = row.get(col)
            if isinstance(v, bytes):
                v = v.hex()
            if isinstance(v, str):
                v = safe_text(v)
            if isinstance(v, str) and v.startswith(_FORMULA_START):
                v = "'" + v
            values.append("" if v is None else v)
        writer.writerow(values)


def policy(show_names: bool = False) -> DisplayPolicy:
    return DisplayPolicy(show_flagged_names=show_names)
