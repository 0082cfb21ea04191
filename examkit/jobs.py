"""Batch jobs file: the cases, evidence and reports ``examkit batch JOBS.toml`` runs.

The file is TOML; relative paths are relative to the jobs file's folder, ``~``
is expanded::

    # optional defaults for every case
    examiner = "J. Doe"
    hashsets = ["vics-2026", "nsrl-rds3"]   # default: every set in the library
    hashset_dir = "/lab/hashsets"
    workers = 8
    cluster = "tcp://scheduler:8786"        # optional Dask scheduler
    perceptual = true                       # false: --no-perceptual
    verify = true                           # false: --no-verify (media not hashed)

    [[case]]
    path = "cases/2026-0042.sqlite"          # required; created if missing
    case_number = "2026-0042"               # optional (used only when the case is created)
    title = "Operation X"                   # optional
    agency = "Lab"                          # optional
    examiner = "A. Other"                   # overrides the default; same for hashsets, hashset_dir, workers, cluster, perceptual, verify

      [[case.evidence]]
      path = "/evidence/laptop.E01"          # or: paths = ["disk.001", "disk.002"] (exactly one of path/paths)
      id = "E001"                            # optional evidence id
      description = "Dell laptop, bag 12"    # optional
      expect = { md5 = "…", sha256 = "…" }   # optional acquisition hashes: keys md5/sha1/sha256, hex of the right length
      unlock = ["*=key-file:keys/E001.key"]   # optional: --unlock values (prefer key files: a password here is in clear text)
      shadow_copies = true                   # optional: --shadow-copies

      [[case.report]]
      format = "pdf"                         # a report format name
      output = "reports/2026-0042.pdf"       # required
      show_names = false                     # optional, default false

``load_jobs`` checks the whole file before anything runs and raises one
``JobsFileError`` listing every problem with its line number. Evidence that does
not exist or cannot be read is only a warning: the runner records that item as
failed and goes on with the rest.
"""  # noqa: E501 (the format as examiners see it, long comments included)

from __future__ import annotations

import difflib
import hashlib
import os
import re
import tomllib
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UsageError
from .layers import Unlock, parse_unlock

DEFAULT_KEYS = ("examiner", "hashsets", "hashset_dir", "workers", "cluster", "perceptual", "verify")
TOP_KEYS = (*DEFAULT_KEYS, "case")
CASE_KEYS = ("path", "case_number", "title", "agency", *DEFAULT_KEYS, "evidence", "report")
EVIDENCE_KEYS = ("path", "paths", "id", "description", "expect", "unlock", "shadow_copies")
REPORT_KEYS = ("format", "output", "show_names")
DIGEST_LENGTHS = {"md5": 32, "sha1": 40, "sha256": 64}

Where = tuple[str | int, ...]  # a value's place in the parsed document: ("case", 0, "path")


@dataclass(frozen=True)
class JobProblem:
    """One problem (or warning) in the jobs file, at ``line`` when it can be located."""

    line: int | None
    message: str

    def __str__(self) -> str:
        return self.message if self.line is None else f"line {self.line}: {self.message}"


class JobsFileError(UsageError):
    """The jobs file is not valid; ``problems`` lists every problem found."""

    def __init__(
        self,
        message: str,
        hint: str = "",
        problems: Collection[JobProblem] = (),
        warnings: Collection[JobProblem] = (),
    ) -> None:
        super().__init__(message, hint)
        self.problems = tuple(problems)
        self.warnings = tuple(warnings)

    @classmethod
    def listing(
        cls, path: Path, problems: Collection[JobProblem], warnings: Collection[JobProblem] = ()
    ) -> JobsFileError:
        """The error for ``problems`` found in the jobs file at ``path``."""
        return cls(
            f"{Path(path).name}: {len(problems)} problem(s) in the jobs file",
            f"fix them, then re-check with `examkit batch --check {path}`",
            problems,
            warnings,
        )


@dataclass(frozen=True)
class EvidenceJob:
    paths: tuple[Path, ...]  # one image, or the segments of a split raw image in order
    evidence_id: str | None
    description: str | None
    expect: dict[str, str]  # acquisition hashes, lower-case hex: {"md5": ..., "sha256": ...}
    line: int
    unlocks: tuple[Unlock, ...] = field(default=(), repr=False)  # secrets: memory only
    shadow_copies: bool = False


@dataclass(frozen=True)
class ReportJob:
    format: str
    output: Path
    show_names: bool
    line: int


@dataclass(frozen=True)
class CaseJob:
    path: Path
    case_number: str | None
    title: str | None
    agency: str | None
    examiner: str | None
    hashsets: tuple[str, ...] | None  # None: every set in the library
    hashset_dir: Path | None
    workers: int | None
    cluster: str | None
    perceptual: bool
    verify: bool
    evidence: tuple[EvidenceJob, ...]
    reports: tuple[ReportJob, ...]
    line: int


@dataclass(frozen=True)
class JobsFile:
    path: Path
    sha256: str  # of the file's bytes: the runner records which jobs file ran
    cases: tuple[CaseJob, ...]
    warnings: tuple[JobProblem, ...]


def load_jobs(
    path: Path,
    report_formats: Collection[str] = (),
    hashset_names: Collection[str] | None = None,
) -> JobsFile:
    """Read and check a jobs file; every problem is listed in one ``JobsFileError``.

    ``report_formats``: valid format names (empty: any name). ``hashset_names``:
    the sets in the library (None: names are not checked).
    """
    path = Path(path).expanduser()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        problem = JobProblem(None, f"cannot read {path}: {exc.strerror or exc}")
        raise JobsFileError.listing(path, [problem]) from exc
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")  # Notepad's byte order mark
    except UnicodeDecodeError as exc:
        problem = JobProblem(
            raw[: exc.start].count(b"\n") + 1, "not UTF-8 text (save the file as UTF-8)"
        )
        raise JobsFileError.listing(path, [problem]) from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        found = re.search(r"\(at line (\d+), column \d+\)", message)
        line: int | None
        if found:
            line = int(found[1])
        elif "end of document" in message:
            line = len(text.rstrip().split("\n"))
        else:
            line = None
        raise JobsFileError.listing(
            path, [JobProblem(line, f"not valid TOML: {message}")]
        ) from None
    folder = _absolute(path.parent)
    checker = _Checker(folder, _Lines(text), report_formats, hashset_names)
    cases = checker.document(data)
    problems = sorted(checker.problems, key=_by_line)
    warnings = tuple(sorted(checker.warnings, key=_by_line))
    if problems:
        raise JobsFileError.listing(path, problems, warnings)
    return JobsFile(_absolute(path), hashlib.sha256(raw).hexdigest(), cases, warnings)


def _by_line(problem: JobProblem) -> tuple[bool, int]:
    return problem.line is None, problem.line or 0


def _absolute(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # symlink loop
        return Path(os.path.abspath(path))


def _suggest(word: str, choices: Collection[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _listing(names: Collection[str], most: int = 10) -> str:
    if not names:
        return " (the library has no hash sets)"
    shown = sorted(names)[:most]
    more = ", ..." if len(names) > most else ""
    return f" (in the library: {', '.join(shown)}{more})"


def _show(value: Any) -> str:
    """A value as the examiner wrote it, for messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return str(value)


class _Checker:
    """Walks the parsed document: collects problems and warnings, builds the jobs."""

    def __init__(
        self,
        folder: Path,
        lines: _Lines,
        report_formats: Collection[str],
        hashset_names: Collection[str] | None,
    ) -> None:
        self.folder = folder
        self.lines = lines
        self.report_formats = set(report_formats)
        self.hashset_names = None if hashset_names is None else set(hashset_names)
        self.problems: list[JobProblem] = []
        self.warnings: list[JobProblem] = []
        self.case_paths: dict[Path, int | None] = {}
        self.outputs: dict[Path, int | None] = {}
        self.evidence_paths: set[Path] = set()

    def problem(self, where: Where, message: str) -> None:
        self.problems.append(JobProblem(self.lines.find(where), message))

    def document(self, data: dict[str, Any]) -> tuple[CaseJob, ...]:
        self.unknown(data, (), TOP_KEYS, "at the top level")
        defaults = self.defaults(data, ())
        tables = self.tables(data, (), "case", "[[case]]")
        if tables is not None and not tables:
            self.problem(("case",), "no [[case]] in the jobs file")
        cases = []
        for index, table in enumerate(tables or []):
            case = self.case(table, ("case", index), defaults)
            if case is not None:
                cases.append(case)
        for output, line in self.outputs.items():
            if output in self.evidence_paths or output in self.case_paths:
                what = "evidence" if output in self.evidence_paths else "a case database"
                self.problems.append(JobProblem(line, f"report output {output} is {what}"))
        return tuple(cases)

    def case(self, table: dict[str, Any], where: Where, defaults: dict[str, Any]) -> CaseJob | None:
        self.unknown(table, where, CASE_KEYS, "in [[case]]")
        path = self.path(table, where, "path", required="[[case]]")
        if path is not None:
            self.not_directory(path, (*where, "path"), "case path")
            self.once(self.case_paths, path, (*where, "path"), "case path")
        case_number = self.string(table, where, "case_number")
        title = self.string(table, where, "title")
        agency = self.string(table, where, "agency")
        settings = {**defaults, **self.defaults(table, where)}
        evidence = []
        items = self.tables(table, where, "evidence", "[[case.evidence]]")
        if items is not None and not items:
            self.problem(where, "case has no evidence (add a [[case.evidence]] table)")
        ids: dict[str, int | None] = {}
        for index, item in enumerate(items or []):
            job = self.evidence(item, (*where, "evidence", index), ids)
            if job is not None:
                evidence.append(job)
        reports = []
        for index, item in enumerate(self.tables(table, where, "report", "[[case.report]]") or []):
            report = self.report(item, (*where, "report", index))
            if report is not None:
                reports.append(report)
        if path is None:
            return None
        return CaseJob(
            path=path,
            case_number=case_number,
            title=title,
            agency=agency,
            examiner=settings.get("examiner"),
            hashsets=settings.get("hashsets"),
            hashset_dir=settings.get("hashset_dir"),
            workers=settings.get("workers"),
            cluster=settings.get("cluster"),
            perceptual=settings.get("perceptual", True),
            verify=settings.get("verify", True),
            evidence=tuple(evidence),
            reports=tuple(reports),
            line=self.lines.find(where) or 0,
        )

    def defaults(self, table: dict[str, Any], where: Where) -> dict[str, Any]:
        """The settings a case inherits, as given in ``table`` (absent keys left out)."""
        found: dict[str, Any] = {
            "examiner": self.string(table, where, "examiner"),
            "hashsets": self.hashsets(table, where),
            "hashset_dir": self.path(table, where, "hashset_dir"),
            "workers": self.workers(table, where),
            "cluster": self.string(table, where, "cluster", empty=False),
            "perceptual": self.boolean(table, where, "perceptual"),
            "verify": self.boolean(table, where, "verify"),
        }
        return {key: value for key, value in found.items() if value is not None}

    def evidence(
        self, table: dict[str, Any], where: Where, ids: dict[str, int | None]
    ) -> EvidenceJob | None:
        self.unknown(table, where, EVIDENCE_KEYS, "in [[case.evidence]]")
        paths: list[Path] = []
        if "path" in table and "paths" in table:
            self.problem(where, "evidence has both 'path' and 'paths' (give one)")
        elif "paths" in table:
            paths = self.path_list(table, where)
        elif "path" in table:
            one = self.path(table, where, "path")
            paths = [one] if one is not None else []
        else:
            self.problem(where, "evidence needs 'path' (or 'paths' for a split image)")
        key = "paths" if "paths" in table else "path"
        for path in paths:
            self.readable(path, (*where, key))
            self.evidence_paths.add(path)
        evidence_id = self.string(table, where, "id", empty=False)
        if evidence_id is not None:
            self.once(ids, evidence_id, (*where, "id"), "evidence id", "in this case")
        description = self.string(table, where, "description")
        expect = self.expect(table, where)
        unlocks = self.unlocks(table, where)
        shadow_copies = self.boolean(table, where, "shadow_copies")
        if not paths or expect is None:
            return None
        return EvidenceJob(
            paths=tuple(paths),
            evidence_id=evidence_id,
            description=description,
            expect=expect,
            line=self.lines.find(where) or 0,
            unlocks=unlocks,
            shadow_copies=bool(shadow_copies),
        )

    def unlocks(self, table: dict[str, Any], where: Where) -> tuple[Unlock, ...]:
        value, at = table.get("unlock", []), (*where, "unlock")
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.problem(at, 'unlock must be an array of "VOLUME=KIND:VALUE" strings')
            return ()
        found = []
        for text in value:
            try:
                found.append(parse_unlock(text, self.folder))
            except UsageError as exc:  # the message names the volume and kind, never the secret
                self.problem(at, exc.message)
        return tuple(found)

    def report(self, table: dict[str, Any], where: Where) -> ReportJob | None:
        self.unknown(table, where, REPORT_KEYS, "in [[case.report]]")
        fmt = self.string(table, where, "format", empty=False, required="[[case.report]]")
        if fmt is not None and self.report_formats and fmt not in self.report_formats:
            known = sorted(self.report_formats)
            hint = _suggest(fmt, known) or f" (known: {', '.join(known)})"
            self.problem((*where, "format"), f"unknown report format {fmt!r}{hint}")
        output = self.path(table, where, "output", required="[[case.report]]")
        if output is not None:
            self.not_directory(output, (*where, "output"), "report output")
            self.once(self.outputs, output, (*where, "output"), "report output")
        show_names = self.boolean(table, where, "show_names")
        if fmt is None or output is None:
            return None
        line = self.lines.find(where) or 0
        return ReportJob(fmt, output, bool(show_names), line)

    # -- checks shared by the tables

    def unknown(
        self, table: dict[str, Any], where: Where, known: tuple[str, ...], place: str
    ) -> None:
        for key in table:
            if key in known:
                continue
            hint = _suggest(key, known)
            if not hint:
                for keys, header in (
                    (CASE_KEYS, "[[case]]"),
                    (EVIDENCE_KEYS, "[[case.evidence]]"),
                    (REPORT_KEYS, "[[case.report]]"),
                ):
                    if key in keys:
                        hint = f" (it belongs in a {header} table)"
                        break
            self.problem((*where, key), f"unknown key {key!r} {place}{hint}")

    def tables(
        self, table: dict[str, Any], where: Where, key: str, header: str
    ) -> list[dict[str, Any]] | None:
        """The array of tables at ``key`` ([] when absent, None when it is not one)."""
        value = table.get(key, [])
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            self.problem((*where, key), f"{key} must be an array of tables: write {header}")
            return None
        return value

    def string(
        self,
        table: dict[str, Any],
        where: Where,
        key: str,
        *,
        empty: bool = True,
        required: str = "",
    ) -> str | None:
        if key not in table:
            if required:
                self.problem(where, f"{required} needs {key!r}")
            return None
        value = table[key]
        if not isinstance(value, str):
            self.problem((*where, key), f"{key} must be a string, not {_show(value)}")
            return None
        if not empty and not value.strip():
            self.problem((*where, key), f"{key} must not be empty")
            return None
        return value

    def boolean(self, table: dict[str, Any], where: Where, key: str) -> bool | None:
        value = table.get(key)
        if value is not None and not isinstance(value, bool):
            self.problem((*where, key), f"{key} must be true or false, not {_show(value)}")
            return None
        return value

    def workers(self, table: dict[str, Any], where: Where) -> int | None:
        value = table.get("workers")
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            self.problem(
                (*where, "workers"), f"workers must be an integer >= 0, not {_show(value)}"
            )
            return None
        return value

    def hashsets(self, table: dict[str, Any], where: Where) -> tuple[str, ...] | None:
        if "hashsets" not in table:
            return None
        value, at = table["hashsets"], (*where, "hashsets")
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            self.problem(at, "hashsets must be an array of hash-set names")
            return None
        if not value:
            self.problem(at, "hashsets is empty (leave it out to match every set in the library)")
            return None
        if self.hashset_names is not None:
            for name in value:
                if name not in self.hashset_names:
                    hint = _suggest(name, self.hashset_names) or _listing(self.hashset_names)
                    self.problem(at, f"unknown hash set {name!r}{hint}")
        return tuple(value)

    def path(
        self, table: dict[str, Any], where: Where, key: str, *, required: str = ""
    ) -> Path | None:
        text = self.string(table, where, key, empty=False, required=required)
        return None if text is None else self.resolve(text, (*where, key))

    def path_list(self, table: dict[str, Any], where: Where) -> list[Path]:
        value, at = table["paths"], (*where, "paths")
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            self.problem(at, "paths must be an array of file names (the segments, in order)")
            return []
        if not value:
            self.problem(at, "paths is empty")
            return []
        resolved = [self.resolve(text, at) for text in value]
        return [path for path in resolved if path is not None]

    def resolve(self, text: str, where: Where) -> Path | None:
        if "\0" in text:
            self.problem(where, f"{where[-1]} contains a NUL character")
            return None
        path = Path(text).expanduser()
        return _absolute(path if path.is_absolute() else self.folder / path)

    def expect(self, table: dict[str, Any], where: Where) -> dict[str, str] | None:
        value, at = table.get("expect", {}), (*where, "expect")
        if not isinstance(value, dict):
            self.problem(at, 'expect must be a table, e.g. expect = { md5 = "..." }')
            return None
        expect, ok = {}, True
        for algorithm, digest in value.items():
            length = DIGEST_LENGTHS.get(algorithm)
            if length is None:
                hint = _suggest(algorithm, DIGEST_LENGTHS) or " (use md5, sha1 or sha256)"
                self.problem((*at, algorithm), f"unknown hash algorithm {algorithm!r}{hint}")
            elif not isinstance(digest, str):
                self.problem((*at, algorithm), f"expect.{algorithm} must be a string of hex digits")
            elif not re.fullmatch(r"[0-9A-Fa-f]*", digest):
                self.problem((*at, algorithm), f"expect.{algorithm} is not hexadecimal")
            elif len(digest) != length:
                self.problem(
                    (*at, algorithm),
                    f"expect.{algorithm} must be {length} hex digits, not {len(digest)}",
                )
            else:
                expect[algorithm] = digest.lower()
                continue
            ok = False
        return expect if ok else None

    def once(
        self, seen: dict[Any, int | None], value: Any, where: Where, what: str, scope: str = ""
    ) -> None:
        line = self.lines.find(where)
        if value in seen:
            first = seen[value]
            at = f" (first at line {first})" if first is not None else ""
            scope = f" {scope}" if scope else ""
            self.problems.append(
                JobProblem(line, f"{what} {str(value)!r} is used twice{scope}{at}")
            )
        else:
            seen[value] = line

    def not_directory(self, path: Path, where: Where, what: str) -> None:
        if path.is_dir():
            self.problem(where, f"{what} {path} is a folder (give a file name)")

    def readable(self, path: Path, where: Where) -> None:
        if path.is_dir():
            self.problem(where, f"evidence {path} is a folder (give the image file)")
        elif not path.exists():
            self.warnings.append(
                JobProblem(self.lines.find(where), f"evidence {path} does not exist")
            )
        elif not os.access(path, os.R_OK):
            self.warnings.append(
                JobProblem(self.lines.find(where), f"evidence {path} is not readable")
            )


_KEY = r"""(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*')"""
_DOTTED = rf"{_KEY}(?:\s*\.\s*{_KEY})*"
_HEADER = re.compile(rf"\s*(\[\[?)\s*({_DOTTED})\s*\]")
_ASSIGN = re.compile(rf"\s*({_DOTTED})\s*=")
_PART = re.compile(_KEY)


class _Lines:
    """Where tables and keys start in the raw text (tomllib keeps no positions).

    Handles what jobs files written by people look like: comments, blank lines,
    indented headers, bare (or simply quoted) keys, dotted keys, multi-line arrays
    and strings. A value's place is ``("case", 0, "evidence", 1, "path")``; a place
    not found falls back to its parent (an inline table's key -> the ``expect`` line).
    """

    def __init__(self, text: str) -> None:
        self.at: dict[Where, int] = {}
        arrays: dict[Where, int] = {}
        table: Where = ()
        depth = 0  # open brackets and braces of a multi-line value
        multiline: str | None = None  # the delimiter of an open multi-line string
        for number, line in enumerate(text.split("\n"), 1):
            start = 0
            if multiline:
                end = _close(line, 0, multiline)
                if end is None:
                    continue
                multiline, start = None, end
            elif depth == 0:
                header = _HEADER.match(line)
                if header:
                    array = header[1] == "[["
                    table = _table(_names(header[2]), array, arrays)
                    self.at.setdefault(table, number)
                    if array:  # the key that holds the array: its first table
                        self.at.setdefault(table[:-1], number)
                    continue
                key = _ASSIGN.match(line)
                if key:
                    names = _names(key[1])
                    for end in range(1, len(names) + 1):  # a.b = 1 also places a
                        self.at.setdefault((*table, *names[:end]), number)
                    start = key.end()
            depth, multiline = _scan(line, start, depth)

    def find(self, where: Where) -> int | None:
        while where:
            if where in self.at:
                return self.at[where]
            where = where[:-1]
        return None


def _names(dotted: str) -> tuple[str, ...]:
    return tuple(part[1:-1] if part[0] in "\"'" else part for part in _PART.findall(dotted))


def _table(names: tuple[str, ...], array: bool, arrays: dict[Where, int]) -> Where:
    """The place of a ``[a.b]`` / ``[[a.b]]`` header; counts array-of-tables entries."""
    where: Where = ()
    for index, name in enumerate(names):
        where += (name,)
        if array and index == len(names) - 1:
            count = arrays.get(where, 0)
            arrays[where] = count + 1
            where += (count,)
        elif where in arrays:
            where += (arrays[where] - 1,)
    return where


def _scan(line: str, i: int, depth: int) -> tuple[int, str | None]:
    """Skip strings and comments from ``i``: the bracket depth and any open multi-line string."""
    while i < len(line):
        char = line[i]
        if char == "#":
            break
        if char in "\"'":
            delimiter = char * 3
            if line.startswith(delimiter, i):
                end = _close(line, i + 3, delimiter)
                if end is None:
                    return depth, delimiter
                i = end
                continue
            i += 1
            while i < len(line) and line[i] != char:
                i += 2 if char == '"' and line[i] == "\\" else 1
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth = max(0, depth - 1)
        i += 1
    return depth, None


def _close(line: str, i: int, delimiter: str) -> int | None:
    """The index after a multi-line string's closing delimiter (None: not on this line)."""
    while True:
        end = line.find(delimiter, i)
        if end < 0:
            return None
        if delimiter == '"""' and _escaped(line, end):
            i = end + 1
            continue
        end += 3
        extra = 0
        while extra < 2 and end < len(line) and line[end] == delimiter[0]:  # """a"""" is legal
            end, extra = end + 1, extra + 1
        return end


def _escaped(line: str, i: int) -> bool:
    backslashes = 0
    while i - backslashes > 0 and line[i - backslashes - 1] == "\\":
        backslashes += 1
    return backslashes % 2 == 1
