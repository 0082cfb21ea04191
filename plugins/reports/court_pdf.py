"""The court report as PDF (reportlab platypus).

Every page carries a header (report title and case number) and a footer (case
number, integrity status, "page N of M"; the total comes from a canvas that
keeps its pages until the end). Text is escaped for reportlab's paragraph
markup; characters the font cannot draw are written as visible ``\\uXXXX``
escapes instead of blank boxes. Long digests and paths wrap inside their
cells. Output is deterministic (reportlab's invariant mode: fixed dates and id).
"""

from __future__ import annotations

import io
from functools import cache, partial
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import reportlab
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import (
    CondPageBreak,
    Flowable,
    KeepTogether,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    TableStyle,
)
from reportlab.platypus import Table as PdfTable

from .court_model import TITLE, Block, CourtDocument, Fields, Para, Section, Table

_FONTS = (  # (regular, bold): DejaVu when installed (wide coverage), else reportlab's Vera
    (Path("/usr/share/fonts/truetype/dejavu"), "DejaVuSans.ttf", "DejaVuSans-Bold.ttf"),
    (Path(reportlab.__file__).parent / "fonts", "Vera.ttf", "VeraBd.ttf"),
)
SANS, BOLD, MONO = "CourtSans", "CourtSans-Bold", "Courier"
MARGIN = 15 * mm
INK, GREY = colors.HexColor("#1f3a5f"), colors.HexColor("#9aa5b1")
_TONES = {"ok": ("#e8f5eb", "#1e7b34"), "bad": ("#fdecee", "#b00020"), "note": (None, "#333333")}


@cache
def _fonts() -> tuple[frozenset[int], frozenset[int]]:
    """Register the fonts once: ``(code points the sans font draws, those Courier draws)``."""
    for folder, regular, bold in _FONTS:
        if (folder / regular).is_file() and (folder / bold).is_file():
            pdfmetrics.registerFont(TTFont(SANS, str(folder / regular)))
            pdfmetrics.registerFont(TTFont(BOLD, str(folder / bold)))
            break
    sans = frozenset(pdfmetrics.getFont(SANS).face.charWidths)
    cp1252 = (bytes([b]).decode("cp1252", "ignore") for b in range(32, 256))
    return sans, frozenset(ord(c) for c in cp1252 if c)


def _fit(text: str, mono: bool = False) -> str:
    """``text`` with characters the font lacks shown as escapes (as the display gate does)."""
    covered = _fonts()[1 if mono else 0]
    return "".join(c if c == "\n" or ord(c) in covered else _escape(c) for c in text)


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _markup(text: str, mono: bool = False) -> str:
    return "<br/>".join(escape(_fit(line, mono)) for line in text.split("\n"))


@cache
def _styles() -> dict[str, ParagraphStyle]:
    _fonts()
    base = ParagraphStyle("body", fontName=SANS, fontSize=9, leading=11.5, spaceAfter=3)
    cell = ParagraphStyle("cell", base, fontSize=7.5, leading=9.2, spaceAfter=0)
    styles = {
        "body": base,
        "h1": ParagraphStyle("h1", base, fontName=BOLD, fontSize=18, leading=22, textColor=INK),
        "sub": ParagraphStyle("sub", base, fontSize=12, leading=15, spaceAfter=6),
        "h2": ParagraphStyle("h2", base, fontName=BOLD, fontSize=13, leading=16, textColor=INK,
                             spaceBefore=10, spaceAfter=5),
        "h3": ParagraphStyle("h3", base, fontName=BOLD, fontSize=10, leading=13, textColor=INK,
                             spaceBefore=6, spaceAfter=2),
        "cell": cell,
        "head": ParagraphStyle("head", cell, fontName=BOLD),
        "mono": ParagraphStyle("mono", cell, fontName=MONO, fontSize=6.5, leading=8.5),
        "empty": ParagraphStyle("empty", base, textColor=colors.HexColor("#555555")),
    }  # fmt: skip
    for tone, (back, ink) in _TONES.items():
        styles[tone] = ParagraphStyle(
            tone, base, textColor=colors.HexColor(ink), borderPadding=(3, 4, 3, 4),
            backColor=colors.HexColor(back) if back else None, spaceBefore=4, spaceAfter=6,
            fontName=BOLD if tone == "bad" else SANS, leftIndent=4, rightIndent=4,
        )  # fmt: skip
    return styles


def _grid(data: list[list[Any]], widths: list[float], header: bool) -> PdfTable:
    table = PdfTable(data, colWidths=widths, repeatRows=1 if header else 0, splitInRow=1)
    commands: list[Any] = [
        ("GRID", (0, 0), (-1, -1), 0.5, GREY),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("LEFTPADDING", (0, 0), (-1, -1), 3),
        ("RIGHTPADDING", (0, 0), (-1, -1), 3),
        ("TOPPADDING", (0, 0), (-1, -1), 2),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
    ]
    if header:
        commands.append(("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e4e9f0")))
    else:
        commands.append(("BACKGROUND", (0, 0), (0, -1), colors.HexColor("#e4e9f0")))
    table.setStyle(TableStyle(commands))
    table.spaceAfter = 6
    return table


def _block(block: Block, width: float) -> list[Flowable]:
    s = _styles()
    if isinstance(block, Para):
        return [Paragraph(_markup(block.text), s.get(block.tone, s["body"]))]
    if isinstance(block, Fields):
        out: list[Flowable] = [Paragraph(_markup(block.title), s["h3"])] if block.title else []
        rows = [
            [Paragraph(_markup(label), s["head"]),
             Paragraph(_markup(value, label in block.mono), s["mono" if label in block.mono
                                                                 else "cell"])]
            for label, value in block.rows
        ]  # fmt: skip
        # one item stays on one page when it fits there
        return [KeepTogether([*out, _grid(rows, [width * 0.28, width * 0.72], header=False)])]
    if not block.rows:
        return [Paragraph(_markup(block.empty), s["empty"])]
    data = [[Paragraph(_markup(c), s["head"]) for c in block.columns]]
    for row in block.rows:
        data.append(
            [Paragraph(_markup(v, i in block.mono), s["mono" if i in block.mono else "cell"])
             for i, v in enumerate(row)]
        )  # fmt: skip
    return [_grid(data, _widths(block, width), header=True)]


def _widths(block: Table, width: float) -> list[float]:
    """Column widths: each column's longest word (capped) if they fit, spare room by weight;
    otherwise the columns that may break anywhere (digests, paths) share what is left."""
    s, pad = _styles(), 7.0
    need = []
    for i in range(len(block.columns)):
        style = s["mono" if i in block.mono else "cell"]
        cells = [(block.columns[i], s["head"])] + [(row[i], style) for row in block.rows]
        longest = max(
            (pdfmetrics.stringWidth(_fit(word, st is s["mono"]), st.fontName, st.fontSize)
             for text, st in cells for word in text.split()),
            default=0.0,
        )  # fmt: skip
        need.append(min(longest + pad, width * (0.6 if i in block.mono else 0.45)))
    weights = block.widths
    if sum(need) <= width:
        spare, total = width - sum(need), sum(weights)
        return [n + spare * w / total for n, w in zip(need, weights, strict=True)]
    flexible = block.mono | block.wrap
    room = width - sum(n for i, n in enumerate(need) if i not in flexible)
    wrap = block.wrap - block.mono  # digests keep their width if the others can still wrap
    if wrap and room - sum(need[i] for i in block.mono) >= 40 * len(wrap):
        room -= sum(need[i] for i in block.mono)
        flexible = wrap
    if flexible and room >= 30 * len(flexible):
        share = sum(need[i] for i in flexible)
        return [n * room / share if i in flexible else n for i, n in enumerate(need)]
    return [width * w / sum(weights) for w in weights]


def _section(number: int, section: Section, width: float) -> list[Flowable]:
    heading = Paragraph(_markup(f"{number}. {section.title}"), _styles()["h2"])
    out: list[Flowable] = [CondPageBreak(45 * mm), heading]  # no heading alone at a page end
    for block in section.blocks:
        out += _block(block, width)
    return out


class _PagedCanvas(Canvas):  # type: ignore[misc]  # reportlab has no type hints
    """Keeps every page until ``save`` so each can say "page N of M"."""

    def __init__(self, *args: Any, doc: CourtDocument, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._court = doc
        self._pages: list[dict[str, Any]] = []

    def showPage(self) -> None:
        self._pages.append(dict(self.__dict__))
        self._startPage()

    def save(self) -> None:
        for number, state in enumerate(self._pages, 1):
            self.__dict__.update(state)
            self._decorate(number, len(self._pages))
            super().showPage()
        super().save()

    def _fitted(self, text: str, font: str, size: float, room: float) -> str:
        text = _fit(text)
        while text and pdfmetrics.stringWidth(text, font, size) > room:
            text = text[:-2] + "…"
        return text

    def _decorate(self, number: int, total: int) -> None:
        width, height = self._pagesize
        room = width - 2 * MARGIN
        case = f"Case {self._court.case_number}"
        self.saveState()
        self.setStrokeColor(INK)
        self.setLineWidth(0.8)
        self.line(MARGIN, height - MARGIN + 4, width - MARGIN, height - MARGIN + 4)
        self.line(MARGIN, MARGIN - 6, width - MARGIN, MARGIN - 6)
        self.setFillColor(INK)
        self.setFont(BOLD, 8.5)
        self.drawString(MARGIN, height - MARGIN + 8, TITLE)
        self.drawRightString(
            width - MARGIN, height - MARGIN + 8, self._fitted(case, BOLD, 8.5, room * 0.6)
        )
        self.setFont(SANS, 8)
        status = "case verifies" if self._court.integrity_ok else "case FAILS verification"
        self.drawString(
            MARGIN, MARGIN - 16, self._fitted(f"{case} | {status}", SANS, 8, room * 0.7)
        )
        self.drawRightString(width - MARGIN, MARGIN - 16, f"page {number} of {total}")
        self.restoreState()


def render(doc: CourtDocument) -> bytes:
    s = _styles()
    buffer = io.BytesIO()
    pdf = SimpleDocTemplate(
        buffer, pagesize=A4, leftMargin=MARGIN, rightMargin=MARGIN, topMargin=MARGIN + 6,
        bottomMargin=MARGIN + 4, title=_fit(f"{TITLE}: {doc.heading}"), author="examkit",
        subject=_fit(f"Case {doc.case_number}"), creator="examkit court report", invariant=1,
    )  # fmt: skip
    verdict = "the case verifies." if doc.integrity_ok else "the case FAILS verification."
    story: list[Flowable] = [
        Paragraph(_markup(TITLE), s["h1"]),
        Paragraph(_markup(doc.heading), s["sub"]),
        Paragraph(_markup(f"Integrity: {verdict}"), s["ok" if doc.integrity_ok else "bad"]),
        Spacer(1, 4),
    ]
    for number, section in enumerate(doc.sections, 1):
        story += _section(number, section, pdf.width)
    pdf.build(story, canvasmaker=partial(_PagedCanvas, doc=doc))
    return buffer.getvalue()
