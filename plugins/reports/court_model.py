"""The court report's content, shared by the HTML and PDF renderers.

:func:`build` turns a :class:`~examkit.reporting.ReportData` into a
:class:`CourtDocument`: sections of paragraphs, field lists and tables holding
plain text only. Every string from evidence or from hash sets has passed the
display gate (``data.gate``); names of flagged files are withheld unless the
examiner asked for them, and free text that could quote one (run errors,
descriptions, provenance) has those names replaced by ``<withheld>`` too.
Renderers escape the text for their medium; a ``\\n`` in a cell is a line
break put there by this module (the gate shows a real newline as ``\\n``).
No file content and no thumbnail is ever part of the model.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from typing import Any

from examkit.display import WITHHELD
from examkit.reporting import ReportData

TITLE = "Forensic examination report"
NONE = "—"


@dataclass(frozen=True)
class Para:
    text: str
    tone: str = ""  # "", "ok", "bad" or "note"


@dataclass(frozen=True)
class Fields:
    """Label: value pairs (one item: a case, an evidence item, a hash set)."""

    rows: tuple[tuple[str, str], ...]
    title: str = ""
    mono: frozenset[str] = frozenset()  # labels whose values are digests


@dataclass(frozen=True)
class Table:
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    widths: tuple[float, ...]  # relative column widths
    mono: frozenset[int] = frozenset()  # columns holding digests (they may break anywhere)
    empty: str = "None."
    wrap: frozenset[int] = frozenset()  # other columns whose long words may break anywhere


Block = Para | Fields | Table


@dataclass(frozen=True)
class Section:
    key: str
    title: str
    blocks: tuple[Block, ...]


@dataclass(frozen=True)
class CourtDocument:
    case_number: str
    heading: str  # case number and title, for page headers
    integrity_ok: bool
    sections: tuple[Section, ...]


def _count(value: Any) -> str:
    return NONE if value is None else f"{int(value):,}"


def _size(value: Any) -> str:
    if value is None:
        return NONE
    text = f"{int(value):,} bytes"
    if int(value) < 1024:
        return text
    size, units = int(value) / 1024, ["KiB", "MiB", "GiB", "TiB"]
    while size >= 1024 and len(units) > 1:
        size /= 1024
        units.pop(0)
    return f"{text} ({size:.1f} {units[0]})"


class _Text:
    """The display gate; :meth:`free` also withholds flagged names quoted in free text."""

    def __init__(self, data: ReportData) -> None:
        self.gate = data.gate
        names = set() if data.show_names else {data.gate.text(h["name"]) for h in data.hits}
        self.names = sorted((n for n in names if n), key=len, reverse=True)

    def __call__(self, value: Any, empty: str = NONE) -> str:
        if value is None or value == "":
            return empty
        if not isinstance(value, str | bytes):
            value = json.dumps(value, sort_keys=True, ensure_ascii=False)
        return self.gate.text(value)

    def free(self, value: Any, empty: str = NONE) -> str:
        """Free text (errors, descriptions, provenance, command lines) that could quote a name."""
        text = self(value, empty)
        for name in self.names:
            text = text.replace(name, WITHHELD)
        return text


def _case(data: ReportData, t: _Text) -> Section:
    info, custody = data.info, data.custody
    version = t(info.get("examkit_version"))
    last = custody[-1] if custody else None
    names = (
        "shown at the examiner's request (recorded in the custody log as names_revealed)"
        if data.show_names
        else f"withheld ({WITHHELD}); the folder of each flagged file is shown"
    )
    rows = (
        ("Case number", t(info.get("case_number"))),
        ("Title", t(info.get("title"))),
        ("Agency", t(info.get("agency"))),
        ("Examiner", t(info.get("examiner"))),
        ("Created (UTC)", t(info.get("created_utc"))),
        (
            "Case database",
            f"created with examkit {version}; schema {t(info.get('schema_version'))}",
        ),
        (
            "Report reflects",
            f"custody entries 1 to {last['seq']} (last at {t(last['utc'])} UTC)"
            if last
            else "an empty custody log",
        ),
        ("Names of flagged files", names),
    )
    tone = "ok" if data.integrity["ok"] else "bad"
    verdict = (
        "The case verifies: custody chain intact, signatures valid, results unchanged since"
        " the last recorded state."
        if data.integrity["ok"]
        else "WARNING: the case fails verification (see sections 7 and 8)."
    )
    note = (
        "This report was produced from the case database alone. It contains no file content"
        " and no thumbnails. Its SHA-256 is recorded in the custody log (report_generated)"
        " after it is written, and signed there when the examiner has a signing key."
    )
    return Section("case", "Case", (Fields(rows), Para(verdict, tone), Para(note, "note")))


def _metadata(meta: Any, t: _Text) -> str:
    """What the container says about itself (E01 case number, examiner, notes, dates)."""
    if not isinstance(meta, dict):
        return t.free(meta)
    return "\n".join(f"{t(k)}: {t.free(v)}" for k, v in sorted(meta.items())) or NONE


_VERIFICATION_TONE = {"match": "ok", "mismatch": "bad"}
_ALGORITHMS = (("md5", "MD5"), ("sha1", "SHA-1"), ("sha256", "SHA-256"))


def _evidence(data: ReportData, t: _Text) -> Section:
    blocks: list[Block] = []
    for ev in data.evidence:
        paths = ev.get("source_paths") or []
        rows = [
            ("Description", t.free(ev.get("description"))),
            (
                "Source",
                "\n".join(t.free(p) for p in paths) if isinstance(paths, list) else t.free(paths),
            ),
            ("Container", t(ev.get("container"))),
            ("Container metadata", _metadata(ev.get("container_metadata"), t)),
            ("Media size", _size(ev.get("media_size"))),
            ("Scan status", t(ev.get("scan_status"))),
        ]
        for algo, label in _ALGORITHMS:
            rows.append((f"Acquisition {label}", t(ev.get(f"acquisition_{algo}"))))
        rows.append(("Acquisition hash from", t(ev.get("acquisition_source"))))
        for algo, label in _ALGORITHMS:
            rows.append((f"Media {label}", t(ev.get(f"media_{algo}"))))
        rows += [
            ("Verification", t(ev.get("verification"))),
            ("Verification detail", t.free(ev.get("verification_detail"))),
            ("Verified (UTC)", t(ev.get("verified_utc"))),
        ]
        digests = frozenset(lab for lab, _ in rows if lab.endswith(("MD5", "SHA-1", "SHA-256")))
        blocks.append(Fields(tuple(rows), f"Evidence {t(ev['evidence_id'])}", digests))
        verdict = t(ev.get("verification"))
        blocks.append(Para(f"Verification: {verdict}", _VERIFICATION_TONE.get(verdict, "note")))
    return Section("evidence", "Evidence", tuple(blocks) or (Para("No evidence items."),))


_TOOLS = (("examkit", None), ("Python", None), ("The Sleuth Kit", "sleuthkit"),
          ("pytsk3", "pytsk3"), ("libewf", "libewf"), ("libmagic", "libmagic"),
          ("SQLite", "sqlite"), ("Platform", "platform"))  # fmt: skip


def _tools(data: ReportData, t: _Text) -> Section:
    runs, tools = [], []
    plugins: dict[tuple[str, str], list[str]] = {}
    for run in data.runs:
        rid = str(run["run_id"])
        argv = run.get("command_line")
        line = (
            " ".join(shlex.quote(t.free(a)) for a in argv)
            if isinstance(argv, list)
            else t.free(argv)
        )
        who = f"{t(run.get('examiner'))}\n{t(run.get('os_user'))}@{t(run.get('host'))}"
        status = t(run.get("status")) + (
            f"\nerror: {t.free(run['error'])}" if run.get("error") else ""
        )
        when = f"{t(run.get('started_utc'))}\n{t(run.get('finished_utc'))}"
        runs.append((rid, f"{t(run.get('command'))}\n{line}", status, when, who))
        versions = run.get("tool_versions")
        versions = versions if isinstance(versions, dict) else {}
        others = (t(versions.get(key)) for _, key in _TOOLS[2:])
        tools.append((rid, t(run.get("examkit_version")), t(run.get("python_version")), *others))
        pv = run.get("plugin_versions")
        for name, version in sorted(pv.items() if isinstance(pv, dict) else []):
            plugins.setdefault((t(name), t(version)), []).append(rid)
    return Section("tools", "Tools and versions", (
        Table(("Run", "Command", "Status", "Started / finished (UTC)", "Examiner, OS user@host"),
              tuple(runs), (0.6, 3.4, 1.3, 2.2, 2.0), empty="No runs recorded.",
              wrap=frozenset({1, 2})),
        Table(("Run", *(name for name, _ in _TOOLS)), tuple(tools),
              (0.6, 0.9, 0.9, 1.0, 1.1, 1.1, 0.9, 0.9, 2.6), empty="No runs recorded.",
              wrap=frozenset({8})),
        Table(("Plugin", "Version (package)", "Runs"),
              tuple((n, v, ", ".join(r)) for (n, v), r in plugins.items()), (3.0, 4.5, 1.2),
              empty="No plugins recorded.", wrap=frozenset({1})),
    ))  # fmt: skip


def _hashsets(data: ReportData, t: _Text) -> Section:
    blocks: list[Block] = []
    for hs in data.hashsets:
        algos = hs.get("algorithms")
        counts = ", ".join(
            f"{t(a)} {t(c.get('count'))}"
            for a, c in sorted(algos.items() if isinstance(algos, dict) else [])
            if isinstance(c, dict)
        )
        profile = hs.get("category_profile")
        profile = profile.get("name") if isinstance(profile, dict) else profile
        used = f"{t(hs.get('first_used_utc'))} (run {t(hs.get('first_used_run_id'))})"
        prov = hs.get("provenance")
        rows = (
            ("Kind", t(hs.get("kind"))),
            ("Format", t(hs.get("format"))),
            ("Version", t(hs.get("version"))),
            ("Entries", f"{hs.get('entries') or 0:,}" + (f" ({counts})" if counts else "")),
            ("Description", t.free(hs.get("description"))),
            ("Source file", f"{t(hs.get('source_name'))} ({_size(hs.get('source_size'))})"),
            ("Source SHA-256", t(hs.get("source_sha256"))),
            ("Imported (UTC)", f"{t(hs.get('imported_utc'))} by {t(hs.get('imported_by'))}"),
            ("First used (UTC)", used),
            ("Category profile", t(profile)),
            ("Provenance", t.free(prov) if prov else "none recorded in the file"),
        )
        blocks.append(Fields(rows, f"Hash set {t(hs.get('name'))}", frozenset({"Source SHA-256"})))
    return Section("hashsets", "Hash sets", tuple(blocks) or (Para("No hash sets were used."),))


def _category(label: Any, number: Any, t: _Text) -> str:
    if label is None and number is None:
        return "uncategorised"
    if label is None or str(label) == str(number):
        return t(label if label is not None else number)
    return f"{t(label)} ({t(number)})" if number is not None else t(label)


def _summary(data: ReportData, t: _Text) -> Section:
    c = data.counts
    totals = Fields(
        (
            ("Files and streams listed", f"{c['files']:,}"),
            ("Hashed completely", f"{c['hashed']:,}"),
            ("Flagged (known-bad, alerting category)", f"{c['flagged']:,}"),
            ("Known-good (matched a known-good set)", f"{c['known_good']:,}"),
        )
    )
    rows = tuple(
        (t(r["hashset"]), _category(r["category_label"], r["category"], t), f"{r['files']:,}",
         f"{r['victim_identified_files']:,}")
        for r in data.hit_summary
    )  # fmt: skip
    columns = ("Hash set", "Category", "Flagged files", "Of which victim identified")
    empty = "No file matched a known-bad entry."
    table = Table(columns, rows, (2.0, 2.5, 1.2, 1.6), empty=empty, wrap=frozenset({0, 1}))
    return Section("summary", "Summary of hits", (totals, table))


_VICTIM: dict[Any, str] = {1: "yes", 0: "no"}


def _match(hit: dict[str, Any], t: _Text) -> str:
    """How the file matched: exact digests, or a perceptual hash and its Hamming distance."""
    algorithms = str(hit.get("algorithms") or "")
    if any(a in ("pdq", "phash") for a in algorithms.split(",")):
        return f"{t(algorithms)} (near: distance {t(hit.get('distance'))})"
    return f"{t(algorithms)} (exact)"


def _flagged(data: ReportData, t: _Text) -> Section:
    seen, rows = set(), []
    for h in data.hits:
        row = (
            t(h["evidence_id"]), str(h["file_id"]), data.gate.path(h["path"], flagged=True),
            _count(h["size"]), f"{t(h['md5'])}\n{t(h['sha1'])}", _match(h, t), t(h["hashset"]),
            _category(h["category_label"], h["category"], t), t(h.get("series")),
            _VICTIM.get(h.get("victim_identified"), "unknown"),
        )  # fmt: skip
        if row not in seen:  # one row per file, set and entry: entries may repeat
            seen.add(row)
            rows.append(row)
    columns = ("Evidence", "File id", "Path", "Size (bytes)", "MD5 / SHA-1", "Matched by",
               "Hash set", "Category", "Series", "Victim identified")  # fmt: skip
    widths = (0.9, 0.6, 2.6, 0.9, 3.0, 0.9, 1.0, 1.0, 0.9, 0.9)
    table = Table(columns, tuple(rows), widths, frozenset({4}), "No flagged files.", frozenset({2}))
    return Section("flagged", "Flagged files", (table,))


# details keys worth a line in the log summary (the entry hash covers all of them)
_SUMMARY_KEYS = ("run_id", "command", "evidence_id", "stage", "result", "detail", "name", "kind",
                 "format", "entries", "container", "media_size", "flagged_files",
                 "known_good_files", "bytes_hashed", "files", "show_names", "sha256", "ok",
                 "reason", "signatures", "rehash", "error", "problems")  # fmt: skip
_FREE_KEYS = frozenset({"detail", "reason", "error", "problems"})


def _details(raw: Any, t: _Text) -> str:
    try:
        details = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return t.free(raw)[:200]
    if not isinstance(details, dict):
        return t.free(details)[:200]
    parts = []
    for key in _SUMMARY_KEYS:
        value = details.get(key)
        if value is None or value == [] or (key == "error" and not value):
            continue
        text = t.free(value) if key in _FREE_KEYS else t(value)
        if key == "sha256":
            text = text[:16] + "…"
        parts.append(f"{key}: {text if len(text) <= 120 else text[:119] + '…'}")
    return "; ".join(parts)


def _custody(data: ReportData, t: _Text) -> Section:
    integ = data.integrity
    rows = tuple(
        (str(e["seq"]), t(e["utc"]), t(e["actor"]), t(e["action"]), _details(e["details"], t),
         t(e["hash"])[:16] + "…")
        for e in data.custody
    )  # fmt: skip
    columns = ("Seq", "UTC", "Actor", "Action", "Details (summary)", "Entry hash")
    widths = (0.5, 2.0, 1.0, 1.5, 4.5, 1.5)
    table = Table(columns, rows, widths, frozenset({5}), "The log is empty.", frozenset({4}))
    chain = Para(f"Custody chain: {t(integ['chain'])}.", "ok" if integ["chain_ok"] else "bad")
    if integ["state_seq"] is None:
        state = Para("Result state: no state digest recorded.", "note")
    elif integ["state_problems"]:
        problems = "; ".join(t.free(p) for p in integ["state_problems"])
        state = Para(f"Result state: CHANGED outside examkit: {problems}.", "bad")
    else:
        seq = integ["state_seq"]
        state = Para(f"Result state: the results match the state recorded in entry {seq}.", "ok")
    return Section("custody", "Custody log", (table, chain, state))


def _signatures(data: ReportData, t: _Text) -> Section:
    integ = data.integrity
    checked, problems = integ["signatures_checked"], integ["signature_problems"]
    if problems:
        status = Para(
            f"Signatures: {len(problems)} of {checked} do NOT verify: "
            + "; ".join(t.free(p) for p in problems),
            "bad",
        )
    elif checked:
        status = Para(f"Signatures: all {checked} signatures verify against the stored keys.", "ok")
    else:
        status = Para(
            "Signatures: none. The examiner had no signing key when the runs ended.", "note"
        )
    keys = tuple(
        (t(k["key_id"]), t(k.get("examiner")), t(k.get("added_utc"))) for k in integ["signing_keys"]
    )
    columns = ("Key id (SHA-256 of the public key)", "Examiner", "Added (UTC)")
    table = Table(columns, keys, (4.5, 2.0, 2.0), frozenset({0}), "No signing keys.")
    return Section("signatures", "Signatures", (status, table))


def build(data: ReportData) -> CourtDocument:
    t = _Text(data)
    number = t(data.info.get("case_number"))
    title = data.info.get("title")
    sections = tuple(
        part(data, t)
        for part in (_case, _evidence, _tools, _hashsets, _summary, _flagged, _custody, _signatures)
    )
    heading = f"Case {number}" + (f" — {t(title)}" if title else "")
    return CourtDocument(number, heading, bool(data.integrity["ok"]), sections)
