"""The court report (``html``, ``pdf``): two fixture images scanned with a known-bad md5sum
set and a signing key; every section is there, flagged names are withheld (shown only with
--show-names), the HTML loads nothing from outside (checked statically and in headless
Chromium with a network log), and the PDF paginates with the case number and "page N of M"
on every page, wraps long digests and paths inside the page, and is deterministic.
"""

from __future__ import annotations

import hashlib
import html
import io
import json
import os
import re
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import examkit.plugins as P
from examkit.case import Case
from examkit.cli.app import main
from examkit.reporting import ReportData
from tests.conftest import FIXTURES

PLAN = {f["path"]: f for f in json.loads((FIXTURES / "plans" / "fat16.json").read_text())["files"]}
BAD = ["pictures/checkerboard.png", "pictures/stripes.jpg"]  # stand-ins for contraband
SECRETS = ("checkerboard", "stripes")  # no trace of the flagged names without --show-names
CASE_NUMBER = "2026-CR-0042"
DESCRIPTION = "Seized <b>laptop</b> \x1b[31m"  # markup and an escape sequence: shown as text
SECTIONS = ("Case", "Evidence", "Tools and versions", "Hash sets", "Summary of hits",
            "Flagged files", "Custody log", "Signatures")  # fmt: skip
PAGE_WIDTH, MARGIN = 595.28, 42.52  # A4 and 15 mm, in points


@pytest.fixture(scope="module")
def court_case(
    tmp_path_factory: pytest.TempPathFactory, fixture_images: Path
) -> Iterator[dict[str, Any]]:
    """A signed case: fat16 (acquisition MD5 given: verifies) and ext4, one known-bad set."""
    folder = tmp_path_factory.mktemp("court")
    monkey = pytest.MonkeyPatch()
    monkey.setenv("EXAMKIT_HASHSETS", str(folder / "library"))
    monkey.setenv("EXAMKIT_SIGNING_KEY", str(folder / "examiner.pem"))
    try:
        assert main(["key", "generate", "--out", str(folder / "examiner.pem")]) == 0
        known_bad = folder / "bad.md5"
        known_bad.write_text("".join(f"{PLAN[p]['md5']}  {p}\n" for p in BAD))
        assert main(["hashset", "import", str(known_bad), "--name", "bad", "--kind",
                     "known-bad"]) == 0  # fmt: skip
        case = folder / "case.sqlite"
        assert main(["case", "init", str(case), "--case-number", CASE_NUMBER, "--title",
                     "R v. Example", "--agency", "Test Constabulary", "--examiner",
                     "Ex. Aminer"]) == 0  # fmt: skip
        fat16 = fixture_images / "fat16.raw"
        media_md5 = hashlib.md5(fat16.read_bytes()).hexdigest()
        assert main(["scan", str(fat16), "--case", str(case), "--workers", "1", "--examiner",
                     "Ex. Aminer", "--expect", f"md5:{media_md5}", "--description",
                     DESCRIPTION]) == 0  # fmt: skip
        assert main(["scan", str(fixture_images / "ext4.raw"), "--case", str(case),
                     "--workers", "1", "--examiner", "Ex. Aminer"]) == 0  # fmt: skip
        yield {"case": case, "folder": folder, "media_md5": media_md5,
               "set_sha256": hashlib.sha256(known_bad.read_bytes()).hexdigest()}  # fmt: skip
    finally:
        monkey.undo()


def report(court_case: dict[str, Any], fmt: str, *extra: str) -> Path:
    out = Path(court_case["folder"]) / f"report-{fmt}{'-names' if extra else ''}.{fmt}"
    code = main(["report", str(court_case["case"]), "--format", fmt, "-o", str(out), *extra])
    assert code == 0
    return out


def db_rows(case: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(case)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def assert_no_secret(text: str) -> None:
    lowered = text.lower()
    for word in SECRETS:
        assert word not in lowered, f"flagged name {word!r} leaked"


@pytest.fixture(scope="module")
def html_report(court_case: dict[str, Any]) -> Path:
    return report(court_case, "html")


def test_html_has_every_section_and_withholds_flagged_names(
    court_case: dict[str, Any], html_report: Path
) -> None:
    text = html_report.read_text("utf-8")
    for number, title in enumerate(SECTIONS, 1):
        assert f"<h2>{number}. {title}</h2>" in text
    for value in (CASE_NUMBER, "R v. Example", "Test Constabulary", "Ex. Aminer"):
        assert html.escape(value) in text
    # evidence: acquisition and media MD5 agree, verification matched; description escaped
    assert text.count(court_case["media_md5"]) >= 2 and ">match<" in text
    assert "Seized &lt;b&gt;laptop&lt;/b&gt; \\x1b[31m" in text and "<b>laptop" not in text
    # tools and versions from the runs
    tools = json.loads(db_rows(court_case["case"], "SELECT tool_versions FROM runs")[0][0])
    assert "The Sleuth Kit" in text and f">{tools['sleuthkit']}<" in text
    assert f">{tools['libewf']}<" in text and "filesystems/tsk" in text
    # the hash set and its provenance
    assert court_case["set_sha256"] in text and ">md5sum<" in text and ">bad.md5 (" in text
    # hits by set and category, then both flagged files without their names
    plain = re.sub(r"<td[^>]*>", "<td>", text)
    assert "<td>bad</td><td>uncategorised</td><td>2</td><td>0</td>" in plain
    assert text.count("/pictures/&lt;withheld&gt;") == 2
    for path in BAD:
        assert PLAN[path]["md5"] in text and PLAN[path]["sha1"] in text
    assert_no_secret(text)
    (known_good,) = db_rows(court_case["case"], "SELECT sum(known_good) FROM files")[0]
    shown = re.search(r"Known-good \(matched a known-good set\)</th><td[^>]*>([\d,]+)<", text)
    assert shown and shown.group(1) == f"{known_good:,}"
    # custody chain and signatures
    assert "chain intact" in text and "run_finished" in text and "evidence_verified" in text
    (key_id,) = db_rows(court_case["case"], "SELECT key_id FROM signing_keys")[0]
    assert key_id in text and re.search(r"all \d+ signatures verify", text)
    assert "the case verifies" in text


def test_html_loads_nothing_from_outside(html_report: Path) -> None:
    text = html_report.read_text("utf-8")
    lowered = text.lower()
    for needle in ("<script", "<link", "<img", "<iframe", "<object", "<embed", "@import",
                   "url(", "http://", "https://", "//cdn", "src="):  # fmt: skip
        assert needle not in lowered, needle
    assert all(href.startswith("#") for href in re.findall(r'href="([^"]*)"', text))
    assert "Content-Security-Policy" in text and "default-src 'none'" in text


def test_show_names_reveals_the_names_and_is_logged(court_case: dict[str, Any]) -> None:
    text = report(court_case, "html", "--show-names").read_text("utf-8")
    for path in BAD:
        assert f"/{path}" in text
    assert "&lt;withheld&gt;" not in text.split("Flagged files</h2>")[1].split("</table>")[0]
    actions = [a for (a,) in db_rows(court_case["case"], "SELECT action FROM custody_log")]
    assert "names_revealed" in actions


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    pytest.skip("chromium is not installed (apt-get install chromium)")


def _chromium_command(folder: Path) -> list[str]:
    """Headless Chromium with its own profile, and every host name unresolvable."""
    command = [_chromium(), "--headless", "--disable-gpu", "--no-first-run",
               f"--user-data-dir={folder / 'profile'}", "--disable-background-networking",
               "--disable-component-update", "--disable-sync",
               "--host-resolver-rules=MAP * ~NOTFOUND"]  # fmt: skip
    if os.geteuid() == 0:
        command.append("--no-sandbox")  # Chromium's sandbox refuses to run as root
    return command


def _render(page: Path, folder: Path) -> tuple[Path, list[dict[str, Any]]]:
    """Screenshot ``page`` in headless Chromium; the URL requests the page made."""
    shot, netlog = folder / f"{page.stem}.png", folder / f"{page.stem}.netlog.json"
    command = [*_chromium_command(folder), f"--log-net-log={netlog}", f"--screenshot={shot}",
               "--window-size=1280,2000", page.resolve().as_uri()]  # fmt: skip
    done = subprocess.run(command, capture_output=True, timeout=120, check=False)
    assert shot.is_file() and netlog.is_file(), done.stderr.decode(errors="replace")[-2000:]
    raw = netlog.read_text("utf-8")
    try:
        log = json.loads(raw)
    except ValueError:  # a net log cut short lacks its closing brackets
        log = json.loads(raw.rstrip().rstrip(",") + "]}")
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    requests = [e["params"] for e in log["events"] if e["type"] == start and "params" in e]
    # the browser's own background requests have no page behind them; a page's requests
    # carry its origin (file://) in their isolation key and site-for-cookies
    page_requests = [r for r in requests if "file://" in json.dumps(r)]
    return shot, page_requests


def test_html_renders_in_headless_chromium_without_network(
    html_report: Path, tmp_path: Path
) -> None:
    from PIL import Image

    shot, requests = _render(html_report, tmp_path)
    with Image.open(shot) as image:
        assert image.size == (1280, 2000)
        rgb = image.convert("RGB")
        colours = rgb.getcolors(maxcolors=1 << 20) or []
        assert len(colours) > 16, "the screenshot is blank"
        white = max(count for count, colour in colours if colour == (255, 255, 255))
        assert white < 0.97 * 1280 * 2000
    assert requests == [], f"the report made network requests: {requests}"
    # the check above can see a page's requests: a page with outside resources is caught
    bad = tmp_path / "outside.html"
    bad.write_text('<link rel="stylesheet" href="https://cdn.example.org/x.css">'
                   '<img src="http://img.example.com/a.png">hello')  # fmt: skip
    _, requests = _render(bad, tmp_path)
    assert {r["url"] for r in requests} >= {"https://cdn.example.org/x.css",
                                            "http://img.example.com/a.png"}  # fmt: skip


def test_html_prints_with_case_number_and_page_numbers(html_report: Path, tmp_path: Path) -> None:
    printed = tmp_path / "printed.pdf"
    command = [*_chromium_command(tmp_path), "--no-pdf-header-footer",
               f"--print-to-pdf={printed}", html_report.resolve().as_uri()]  # fmt: skip
    done = subprocess.run(command, capture_output=True, timeout=120, check=False)
    assert printed.is_file(), done.stderr.decode(errors="replace")[-2000:]
    pages = assert_paginated(printed, CASE_NUMBER, margin=12 * 72 / 25.4)
    assert len(pages) >= 3 and "Flagged files" in "".join(pages)


def _pdftotext(pdf: Path, *options: str) -> str:
    if not shutil.which("pdftotext"):
        pytest.skip("pdftotext is not installed (apt-get install poppler-utils)")
    done = subprocess.run(["pdftotext", *options, str(pdf), "-"], capture_output=True,
                          check=True, timeout=60)  # fmt: skip
    return done.stdout.decode("utf-8")


def assert_paginated(pdf: Path, case_number: str, margin: float = MARGIN) -> list[str]:
    """Every page has the case number and "page N of M"; no word extends past the margin."""
    pages = _pdftotext(pdf, "-layout").split("\f")
    pages = pages[:-1] if not pages[-1].strip() else pages
    for number, page in enumerate(pages, 1):
        assert case_number in page, f"page {number} lacks the case number"
        assert f"page {number} of {len(pages)}" in page
    boxes = _pdftotext(pdf, "-bbox")
    right = [float(x) for x in re.findall(r'<word xMin="[\d.]+" [^>]*xMax="([\d.]+)"', boxes)]
    assert right and max(right) <= PAGE_WIDTH - margin + 1, "text runs past the right margin"
    return pages


def test_pdf_has_every_section_on_numbered_pages(court_case: dict[str, Any]) -> None:
    pdf = report(court_case, "pdf")
    assert pdf.read_bytes().startswith(b"%PDF-")
    pages = assert_paginated(pdf, CASE_NUMBER)
    text = "\n".join(pages)
    assert "page 1 of" in text and len(pages) >= 3
    for number, title in enumerate(SECTIONS, 1):
        assert f"{number}. {title}" in text
    assert court_case["media_md5"] in text and court_case["set_sha256"] in text
    assert "Seized <b>laptop</b> \\x1b[31m" in text  # shown as text, not as markup
    assert text.count("/pictures/<with") == 2 and "chain intact" in text  # wrapped in the cell
    assert_no_secret(text)
    names = report(court_case, "pdf", "--show-names")
    joined = re.sub(r"\s", "", _pdftotext(names, "-raw"))  # wrapped paths joined again
    assert all(f"/{path}" in joined for path in BAD)


def test_reports_are_deterministic(court_case: dict[str, Any]) -> None:
    plugins = {f: P.registry().get("report_formats", f) for f in ("html", "pdf")}
    with Case.open(court_case["case"]) as case:
        for fmt, plugin in plugins.items():
            outputs = []
            for _ in range(2):
                buffer = io.BytesIO()
                plugin.write(ReportData(case), buffer)
                outputs.append(buffer.getvalue())
            assert outputs[0] == outputs[1], f"{fmt} output differs between two renderings"


def test_pdf_wraps_long_cells_and_repeats_headers_over_many_pages(tmp_path: Path) -> None:
    from examkit_plugins.reports import court_model as m
    from examkit_plugins.reports import court_pdf

    long_path = "/" + "/".join(f"folder-{i:03d}-without-spaces" for i in range(25))
    rows = tuple((str(i), long_path + f"/{i}", "f" * 64, "日本語 ünïcode") for i in range(150))
    table = m.Table(("Id", "Path", "SHA-256", "Note"), rows, (0.5, 4, 3, 1.5),
                    frozenset({2}), wrap=frozenset({1}))  # fmt: skip
    fields = m.Fields((("Provenance", "x" * 20000),), "Long field")  # taller than a page
    doc = m.CourtDocument(
        "LONG-1", "Case LONG-1", False, (m.Section("t", "Table", (table, fields)),)
    )
    pdf = tmp_path / "long.pdf"
    pdf.write_bytes(court_pdf.render(doc))
    pages = assert_paginated(pdf, "LONG-1")
    table_pages = [page for page in pages if "folder-000" in page]
    assert len(table_pages) > 5 and all("SHA-256" in page for page in table_pages)  # repeated
    assert "\\u65e5\\u672c\\u8a9e" in pages[0] and "ünïcode" in pages[0]  # no font: escapes
    assert "case FAILS verification" in pages[-1]
