"""Court reports: one document (``court_model``) rendered as self-contained HTML or as PDF.

Both show the case, the evidence with acquisition and media hashes and their
verification, the tools and versions of every run, the hash sets and their
provenance, hits by set and category, the flagged files (names withheld unless
the examiner asked), the known-good count, the custody log with the chain
status, and the signature status. Neither contains file content or thumbnails.
"""

from __future__ import annotations

from typing import IO

from examkit.errors import PluginError
from examkit.hookspecs import Register, hookimpl
from examkit.reporting import ReportData, ReportFormat

# The document model and its renderers are imported when a report is written: every
# process that loads the plugins (a scan's parent and its workers) would import them.


class CourtHtmlReport(ReportFormat):
    name = "html"
    description = "Court report: one self-contained HTML file (no scripts, no external resources)"
    version = "1"
    extension = ".html"

    def write(self, data: ReportData, out: IO[bytes]) -> None:
        from . import court_html
        from .court_model import build

        out.write(court_html.render(build(data)))


class CourtPdfReport(ReportFormat):
    name = "pdf"
    description = "Court report as PDF: page header, case number and 'page N of M' on every page"
    version = "1"
    extension = ".pdf"

    def write(self, data: ReportData, out: IO[bytes]) -> None:
        from .court_model import build

        try:
            from . import court_pdf  # reportlab is needed for this format only
        except ImportError as exc:
            raise PluginError(
                f"the pdf report needs reportlab ({exc})", "pip install reportlab"
            ) from exc
        out.write(court_pdf.render(build(data)))


@hookimpl
def register_report_formats(register: Register) -> None:
    register(CourtHtmlReport())
    register(CourtPdfReport())
