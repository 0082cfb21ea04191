"""Batch jobs file: parsing, every problem with its line, warnings for missing evidence."""

from __future__ import annotations

import hashlib
import os
import textwrap
from collections.abc import Collection
from pathlib import Path

import pytest

from examkit.errors import UsageError
from examkit.jobs import (
    CaseJob,
    EvidenceJob,
    JobProblem,
    JobsFile,
    JobsFileError,
    ReportJob,
    load_jobs,
)

MD5 = "0123456789abcdef0123456789abcdef"
SHA256 = "ab" * 32


def write(folder: Path, text: str, name: str = "jobs.toml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), "utf-8")
    return path


Found = list[tuple[int | None, str]]


def problems(
    path: Path, report_formats: Collection[str] = (), hashset_names: Collection[str] | None = None
) -> Found:
    with pytest.raises(JobsFileError) as caught:
        load_jobs(path, report_formats, hashset_names)
    return [(p.line, p.message) for p in caught.value.problems]


def assert_problems(found: Found, expected: Found) -> None:
    """Same length; each problem on the expected line, its message containing the text."""
    assert len(found) == len(expected), "\n".join(f"{line}: {msg}" for line, msg in found)
    for (line, message), (want_line, want) in zip(found, expected, strict=True):
        assert line == want_line and want in message, (line, message, want_line, want)


def test_full_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "phone.bin").write_bytes(b"x")
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    for name in ("laptop.E01", "disk.001", "disk.002"):
        (evidence / name).write_bytes(b"x")
    path = write(
        tmp_path,
        f"""
        # lab defaults
        examiner = "J. Doe"
        hashsets = ["vics-2026", "nsrl-rds3"]
        hashset_dir = "/lab/hashsets"
        workers = 8
        cluster = "tcp://scheduler:8786"
        perceptual = true

        [[case]]
        path = "cases/2026-0042.sqlite"
        case_number = "2026-0042"
        title = "Operation X"
        agency = "Lab"

          [[case.evidence]]
          path = "{evidence / "laptop.E01"}"
          id = "E001"
          description = "Dell laptop, bag 12"
          expect = {{ md5 = "{MD5.upper()}", sha256 = "{SHA256}" }}

          [[case.evidence]]
          paths = [
              "evidence/disk.001",
              "evidence/disk.002",
          ]

          [[case.report]]
          format = "pdf"
          output = "reports/2026-0042.pdf"

          [[case.report]]
          format = "csv"
          output = "reports/2026-0042.csv"
          show_names = true

        [[case]]
        path = "cases/2026-0043.sqlite"
        examiner = "A. Other"
        hashsets = ["vics-2026"]
        hashset_dir = "sets"
        workers = 0
        perceptual = false
        verify = false

          [[case.evidence]]
          path = "~/phone.bin"
        """,
    )
    jobs = load_jobs(path, report_formats={"pdf", "csv"}, hashset_names={"vics-2026", "nsrl-rds3"})
    assert jobs == JobsFile(
        path=path,
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        warnings=(),
        cases=(
            CaseJob(
                path=tmp_path / "cases" / "2026-0042.sqlite",
                case_number="2026-0042",
                title="Operation X",
                agency="Lab",
                examiner="J. Doe",
                hashsets=("vics-2026", "nsrl-rds3"),
                hashset_dir=Path("/lab/hashsets"),
                workers=8,
                cluster="tcp://scheduler:8786",
                perceptual=True,
                verify=True,
                evidence=(
                    EvidenceJob(
                        paths=(evidence / "laptop.E01",),
                        evidence_id="E001",
                        description="Dell laptop, bag 12",
                        expect={"md5": MD5, "sha256": SHA256},
                        line=15,
                    ),
                    EvidenceJob(
                        paths=(evidence / "disk.001", evidence / "disk.002"),
                        evidence_id=None,
                        description=None,
                        expect={},
                        line=21,
                    ),
                ),
                reports=(
                    ReportJob("pdf", tmp_path / "reports" / "2026-0042.pdf", False, 27),
                    ReportJob("csv", tmp_path / "reports" / "2026-0042.csv", True, 31),
                ),
                line=9,
            ),
            CaseJob(
                path=tmp_path / "cases" / "2026-0043.sqlite",
                case_number=None,
                title=None,
                agency=None,
                examiner="A. Other",
                hashsets=("vics-2026",),
                hashset_dir=tmp_path / "sets",
                workers=0,
                cluster="tcp://scheduler:8786",
                perceptual=False,
                verify=False,
                evidence=(
                    EvidenceJob(
                        paths=(tmp_path / "home" / "phone.bin",),
                        evidence_id=None,
                        description=None,
                        expect={},
                        line=45,
                    ),
                ),
                reports=(),
                line=36,
            ),
        ),
    )


def test_every_mistake_with_its_line(tmp_path: Path) -> None:
    (tmp_path / "folder").mkdir()
    path = write(
        tmp_path,
        '''
        examiner = "J. Doe"
        workers = "eight"
        perceptual = "yes"
        hashsets = ["vics-2026", "nsrl"]
        colour = "blue"

        [[case]]
        path = "a.sqlite"
        evidance = []   # typo; the tables below are still evidence

          [[case.evidence]]
          pth = "x.E01"
          id = "E1"
          description = """
        path = 'not a key: inside a multi-line string'
        """

          [[case.evidence]]
          path = "img.E01"
          paths = ["a", "b"]
          id = "E1"
          expect = { md5 = "abc", sha512 = "00", sha1 = "zz" }

          [[case.evidence]]
          paths = []

          [[case.evidence]]
          path = "folder"

          [[case.report]]
          format = "pfd"
          output = "r.pdf"
          show_names = 1

          [[case.report]]
          format = "csv"
          output = "./r.pdf"

        [[case]]
        path = "./a.sqlite"
        verify = "no"
        hashsets = [
            "vics-2062",
        ]
        [[case]]
        title = 5
        format = "pdf"
        [[case.report]]
        output = "x.pdf"
        ''',
    )
    found = problems(path, report_formats=("pdf", "csv"), hashset_names=("vics-2026", "nsrl-rds3"))
    assert_problems(
        found,
        [
            (2, "workers must be an integer >= 0, not 'eight'"),
            (3, "perceptual must be true or false, not 'yes'"),
            (4, "unknown hash set 'nsrl' (did you mean 'nsrl-rds3'?)"),
            (5, "unknown key 'colour' at the top level"),
            (9, "unknown key 'evidance' in [[case]] (did you mean 'evidence'?)"),
            (11, "evidence needs 'path' (or 'paths' for a split image)"),
            (12, "unknown key 'pth' in [[case.evidence]] (did you mean 'path'?)"),
            (18, "evidence has both 'path' and 'paths'"),
            (21, "evidence id 'E1' is used twice in this case (first at line 13)"),
            (22, "expect.md5 must be 32 hex digits, not 3"),
            (22, "unknown hash algorithm 'sha512'"),
            (22, "expect.sha1 is not hexadecimal"),
            (25, "paths is empty"),
            (28, "is a folder"),
            (31, "unknown report format 'pfd' (did you mean 'pdf'?)"),
            (33, "show_names must be true or false, not 1"),
            (
                37,
                "report output '" + str(tmp_path / "r.pdf") + "' is used twice (first at line 32)",
            ),
            (39, "case has no evidence"),
            (40, "case path '" + str(tmp_path / "a.sqlite") + "' is used twice (first at line 8)"),
            (41, "verify must be true or false, not 'no'"),
            (42, "unknown hash set 'vics-2062' (did you mean 'vics-2026'?)"),
            (45, "[[case]] needs 'path'"),
            (45, "case has no evidence"),
            (46, "title must be a string, not 5"),
            (47, "unknown key 'format' in [[case]] (it belongs in a [[case.report]] table)"),
            (48, "[[case.report]] needs 'format'"),
        ],
    )


def test_error_message_hint_and_exit_code(tmp_path: Path) -> None:
    path = write(tmp_path, "workers = -1\n")
    with pytest.raises(JobsFileError) as caught:
        load_jobs(path)
    error = caught.value
    assert isinstance(error, UsageError) and error.exit_code == 2
    assert error.message == "jobs.toml: 2 problem(s) in the jobs file"
    assert "examkit batch --check" in error.hint
    assert [str(p) for p in error.problems] == [
        "line 1: workers must be an integer >= 0, not -1",
        "no [[case]] in the jobs file",
    ]
    assert str(JobProblem(None, "x")) == "x" and str(JobProblem(3, "x")) == "line 3: x"


def test_toml_syntax_error_line(tmp_path: Path) -> None:
    path = write(tmp_path, '[[case]]\npath = "a"\n\n[[case.evidence]]\npath = "b\nid = "x"\n')
    [(line, message)] = problems(path)
    assert line == 5 and message.startswith("not valid TOML: ")


def test_unreadable_and_not_utf8(tmp_path: Path) -> None:
    [(line, message)] = problems(tmp_path / "missing.toml")
    assert line is None and "cannot read" in message
    bad = tmp_path / "latin1.toml"
    bad.write_bytes('[[case]]\ntitle = "Op\xe9ration"\n'.encode("latin-1"))
    assert problems(bad) == [(2, "not UTF-8 text (save the file as UTF-8)")]


def test_missing_evidence_is_a_warning(tmp_path: Path) -> None:
    (tmp_path / "disk.001").write_bytes(b"x")
    path = write(
        tmp_path,
        """
        [[case]]
        path = "c.sqlite"
          [[case.evidence]]
          path = "gone.E01"
          [[case.evidence]]
          paths = ["disk.001", "disk.002", "disk.003"]
        """,
    )
    jobs = load_jobs(path)
    assert [len(e.paths) for e in jobs.cases[0].evidence] == [1, 3]
    assert [(w.line, w.message) for w in jobs.warnings] == [
        (4, f"evidence {tmp_path / 'gone.E01'} does not exist"),
        (6, f"evidence {tmp_path / 'disk.002'} does not exist"),
        (6, f"evidence {tmp_path / 'disk.003'} does not exist"),
    ]


def test_unreadable_evidence_is_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    image = tmp_path / "e.raw"
    image.write_bytes(b"x")
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != image)  # root reads all
    path = write(tmp_path, '[[case]]\npath = "c.sqlite"\n[[case.evidence]]\npath = "e.raw"\n')
    assert [str(w) for w in load_jobs(path).warnings] == [
        f"line 4: evidence {image} is not readable"
    ]


def test_formats_and_hashsets_checked_only_when_given(tmp_path: Path) -> None:
    (tmp_path / "e.raw").write_bytes(b"x")
    path = write(
        tmp_path,
        """
        hashsets = ["nsrl"]
        [[case]]
        path = "c.sqlite"
        hashsets = ["ours"]
          [[case.evidence]]
          path = "e.raw"
          [[case.report]]
          format = "html"
          output = "r.html"
        """,
    )
    assert load_jobs(path).cases[0].hashsets == ("ours",)
    assert_problems(
        problems(path, report_formats=["pdf", "csv"], hashset_names=["nsrl"]),
        [
            (4, "unknown hash set 'ours' (in the library: nsrl)"),
            (8, "unknown report format 'html' (known: csv, pdf)"),
        ],
    )
    assert_problems(
        problems(path, hashset_names=[]),
        [(1, "'nsrl' (the library has no hash sets)"), (4, "'ours'")],
    )


def test_duplicates(tmp_path: Path) -> None:
    (tmp_path / "e.raw").write_bytes(b"x")
    path = write(
        tmp_path,
        """
        [[case]]
        path = "cases/c.sqlite"
          [[case.evidence]]
          path = "e.raw"
          id = "E1"
          [[case.evidence]]
          path = "e.raw"
          id = "E2"
          [[case.report]]
          format = "pdf"
          output = "out/r.pdf"
        [[case]]
        path = "cases/../cases/c.sqlite"
          [[case.evidence]]
          path = "e.raw"
          id = "E1"
          [[case.evidence]]
          path = "e.raw"
          id = "E1"
          [[case.report]]
          format = "csv"
          output = "out/r.pdf"
        """,
    )
    assert_problems(
        problems(path),
        [
            (13, "case path"),
            (19, "evidence id 'E1' is used twice in this case (first at line 16)"),
            (22, "report output"),
        ],
    )


def test_typo_suggestions(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        worker = 4
        title = "at the wrong level"
        [[case]]
        pth = "c.sqlite"
        prceptual = false
          [[case.evidence]]
          path = "e.raw"
          expect = { sha-256 = "00" }
          descripton = "x"
          [[case.reports]]
          format = "pdf"
        """,
    )
    assert_problems(
        problems(path),
        [
            (1, "unknown key 'worker' at the top level (did you mean 'workers'?)"),
            (2, "unknown key 'title' at the top level (it belongs in a [[case]] table)"),
            (3, "[[case]] needs 'path'"),
            (4, "unknown key 'pth' in [[case]] (did you mean 'path'?)"),
            (5, "unknown key 'prceptual' in [[case]] (did you mean 'perceptual'?)"),
            (8, "unknown hash algorithm 'sha-256' (did you mean 'sha256'?)"),
            (9, "unknown key 'descripton' in [[case.evidence]] (did you mean 'description'?)"),
            (10, "unknown key 'reports' in [[case]] (did you mean 'report'?)"),
        ],
    )


def test_wrong_shapes(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        hashsets = "vics"
        [[case]]
        path = "c.sqlite"
        evidence = "e.raw"
        report = [1, 2]
        [case.extra]
        x = 1
        """,
    )
    assert_problems(
        problems(path),
        [
            (1, "hashsets must be an array of hash-set names"),
            (4, "evidence must be an array of tables: write [[case.evidence]]"),
            (5, "report must be an array of tables"),
            (6, "unknown key 'extra' in [[case]]"),
        ],
    )


def test_line_locator_on_hand_written_toml(tmp_path: Path) -> None:
    (tmp_path / "e.raw").write_bytes(b"x")
    text = """# comment: workers = "x"
[[case]]   # first case
path = "c.sqlite"
"title" = 5
agency = [ "multi-line",
  "array" ]
  [[case.evidence]]
  path = "e.raw"
  expect.md5 = "zz"
  [[case.evidence]]
  path = "e.raw"
  [case.evidence.expect]
  sha1 = "00"

  [[case.report]]
  format = "pdf"
  output = "e.raw"
"""
    path = tmp_path / "jobs.toml"
    path.write_bytes(text.replace("\n", "\r\n").encode())
    assert_problems(
        problems(path),
        [
            (4, "title must be a string, not 5"),
            (5, "agency must be a string, not an array"),
            (9, "expect.md5 is not hexadecimal"),
            (13, "expect.sha1 must be 40 hex digits, not 2"),
            (17, f"report output {tmp_path / 'e.raw'} is evidence"),
        ],
    )
