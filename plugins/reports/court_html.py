"""The court report as one self-contained HTML file.

Inline CSS only: no script, no font, image, stylesheet or link to anything
outside the file, and a Content-Security-Policy that forbids loading any, so
opening the report never touches the network. Every string is HTML-escaped.
The print style gives A4 pages with the case number and "page N of M".
"""

from __future__ import annotations

from html import escape

from .court_model import TITLE, Block, CourtDocument, Fields, Para, Section, Table

_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'none'; font-src 'none';"
    " connect-src 'none'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
)

_CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { font: 10.5pt/1.4 "DejaVu Sans", "Liberation Sans", Arial, sans-serif; color: #111;
  background: #fff; margin: 0 auto; max-width: 1200px; padding: 24px; }
header.doc { border-bottom: 3px solid #1f3a5f; margin-bottom: 16px; padding-bottom: 8px; }
h1 { font-size: 20pt; margin: 0 0 4px; color: #1f3a5f; }
h2 { font-size: 14pt; margin: 22px 0 8px; padding: 4px 8px; background: #1f3a5f; color: #fff;
  break-after: avoid; page-break-after: avoid; }
h3 { font-size: 11pt; margin: 14px 0 4px; color: #1f3a5f; break-after: avoid; }
p { margin: 6px 0; }
.sub { font-size: 12pt; color: #333; }
nav ol { columns: 2; margin: 6px 0 0; font-size: 9.5pt; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 10px; font-size: 9pt; }
th, td { border: 1px solid #9aa5b1; padding: 3px 5px; vertical-align: top; text-align: left;
  overflow-wrap: break-word; }
td.wrap { overflow-wrap: anywhere; }
th { background: #e4e9f0; }
thead { display: table-header-group; }
tr { break-inside: avoid; page-break-inside: avoid; }
table.fields th { width: 26%; }
.mono { font-family: "DejaVu Sans Mono", "Liberation Mono", Consolas, monospace; font-size: 8.5pt; }
.tone { padding: 4px 8px; border-left: 5px solid #9aa5b1; background: #f4f6f8; }
.ok { border-left-color: #1e7b34; background: #e8f5eb; }
.bad { border-left-color: #b00020; background: #fdecee; font-weight: bold; }
.note { color: #333; }
.empty { font-style: italic; color: #555; }
footer { margin-top: 24px; font-size: 8.5pt; color: #555; border-top: 1px solid #9aa5b1; }
@media print {
  body { max-width: none; padding: 0; font-size: 9.5pt; }
  nav { display: none; }
  h2 { background: none; color: #1f3a5f; border-bottom: 2px solid #1f3a5f; padding: 2px 0; }
  .ok, .bad, th { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
"""


def _css_string(text: str) -> str:
    """``text`` as a CSS string literal: anything but letters, digits and spaces as escapes."""
    return '"' + "".join(c if c.isalnum() or c == " " else f"\\{ord(c):06x}" for c in text) + '"'


def _page_css(doc: CourtDocument) -> str:
    """Printed pages: the case number on each, and "page N of M"."""
    case = _css_string(f"Case {doc.case_number}")
    box = 'font: 8pt "DejaVu Sans", "Liberation Sans", Arial, sans-serif; color: #555;'
    return (
        "@page { size: A4; margin: 16mm 12mm 16mm 12mm;"
        f" @top-left {{ content: {case}; {box} }}"
        f' @top-right {{ content: "{TITLE}"; {box} }}'
        f" @bottom-left {{ content: {case}; {box} }}"
        f' @bottom-right {{ content: "page " counter(page) " of " counter(pages); {box} }} }}'
    )


def _cell(text: str, mono: bool = False) -> str:
    html = "<br>".join(escape(line) for line in text.split("\n"))
    return f'<span class="mono">{html}</span>' if mono else html


def _para(block: Para) -> str:
    tone = f' class="tone {block.tone}"' if block.tone in ("ok", "bad") else ""
    tone = ' class="note"' if block.tone == "note" else tone
    return f"<p{tone}>{_cell(block.text)}</p>"


def _fields(block: Fields) -> str:
    head = f"<h3>{escape(block.title)}</h3>\n" if block.title else ""
    rows = "\n".join(
        f'<tr><th scope="row">{escape(label)}</th>'
        f'<td class="wrap">{_cell(value, label in block.mono)}</td></tr>'
        for label, value in block.rows
    )
    return f'{head}<table class="fields"><tbody>\n{rows}\n</tbody></table>'


def _table(block: Table) -> str:
    if not block.rows:
        return f'<p class="empty">{escape(block.empty)}</p>'
    head = "".join(f'<th scope="col">{escape(c)}</th>' for c in block.columns)
    wrap = [
        ' class="wrap"' if i in block.wrap or i in block.mono else ""
        for i in range(len(block.columns))
    ]
    body = "\n".join(
        "<tr>"
        + "".join(f"<td{wrap[i]}>{_cell(v, i in block.mono)}</td>" for i, v in enumerate(row))
        + "</tr>"
        for row in block.rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>"


def _block(block: Block) -> str:
    if isinstance(block, Para):
        return _para(block)
    if isinstance(block, Fields):
        return _fields(block)
    return _table(block)


def _section(number: int, section: Section) -> str:
    body = "\n".join(_block(b) for b in section.blocks)
    title = f"{number}. {escape(section.title)}"
    return f'<section id="{section.key}">\n<h2>{title}</h2>\n{body}\n</section>'


def render(doc: CourtDocument) -> bytes:
    heading = escape(doc.heading)
    toc = "".join(f'<li><a href="#{s.key}">{escape(s.title)}</a></li>' for s in doc.sections)
    status = (
        '<p class="tone ok">Integrity: the case verifies.</p>'
        if doc.integrity_ok
        else '<p class="tone bad">Integrity: the case FAILS verification.</p>'
    )
    sections = "\n".join(_section(i, s) for i, s in enumerate(doc.sections, 1))
    html = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<meta name="referrer" content="no-referrer">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{heading}: {TITLE}</title>
<style>{_CSS}{_page_css(doc)}
</style>
</head>
<body>
<header class="doc">
<h1>{TITLE}</h1>
<p class="sub">{heading}</p>
{status}
<nav><ol>{toc}</ol></nav>
</header>
{sections}
<footer><p>{heading}. Generated by examkit from the case database alone; names of flagged
files are withheld unless the examiner asked for them.</p></footer>
</body>
</html>
"""
    return html.encode("utf-8")
