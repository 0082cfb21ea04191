"""Runs: every command that changes a case is a run, opened and closed on the record."""

from __future__ import annotations

import getpass
import os
import platform
import socket
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from . import __version__, custody
from .case import Case, dumps
from .clock import utc_now
from .errors import IntegrityError
from .filetype import libmagic_version, text_magic_status
from .integrity import StateAhead, state_differences, state_digest
from .layers import SECRET_KINDS
from .plugins import distribution_version
from .signing import configured_signer, sign_entry


def platform_name() -> str:
    """``platform.platform()``'s string. On Linux it is built from the kernel's fields and
    the C library: ``platform.platform()`` also asks ``uname -p`` for the processor (a
    subprocess, 10-14 ms of every run's start), which it leaves out on Linux whenever it is
    unknown or the machine itself."""
    if sys.platform.startswith("linux"):
        names = platform.uname()  # the processor is looked up only when read
        lib, version = platform.libc_ver()
        parts = [names.system, names.release, names.machine]
        if lib:
            parts += ["with", lib + version]
        return "-".join(p.strip().replace(" ", "_") for p in parts if p)
    return platform.platform()


class _Ahead:
    """``tool_versions()`` worked out in a thread while a command sets itself up: most of
    its ~30 ms is waiting (``ldconfig``, which python-magic runs to find libmagic; reading
    and hashing libmagic's database), which then overlaps the parent's own start instead of
    delaying the run's first job. Its answer is used once, by the next ``tool_versions()``
    of this process, which otherwise (or if the thread failed) works it out itself."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._value: dict[str, str] | None = None

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="examkit-versions",
                                                daemon=True)  # fmt: skip
                self._thread.start()

    def _run(self) -> None:
        try:
            self._value = _tool_versions()
        except Exception:  # worked out again, and raised, by the caller
            self._value = None

    def take(self) -> dict[str, str] | None:
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is None:
            return None
        thread.join()
        value, self._value = self._value, None
        return value


_ahead = _Ahead()


def tool_versions_ahead() -> None:
    """Start working out the versions the next run records (see ``_Ahead``)."""
    _ahead.start()


def tool_versions() -> dict[str, str]:
    """The versions of every tool a run's results depend on, recorded with the run."""
    ahead = _ahead.take()
    return ahead if ahead is not None else _tool_versions()


def _tool_versions() -> dict[str, str]:
    import pyewf
    import pytsk3

    return {
        "python": sys.version.split()[0],
        "platform": platform_name(),
        "pytsk3": distribution_version("pytsk3"),
        "sleuthkit": str(pytsk3.TSK_VERSION_STR),
        "libewf": str(pyewf.get_version()),
        "isal": distribution_version("isal"),  # inflates E01 chunks
        "libmagic": libmagic_version(),
        "libmagic_database": text_magic_status(),
        "sqlite": __import__("sqlite3").sqlite_version,
    }


def os_user() -> str | None:
    try:
        return getpass.getuser()
    except Exception:
        return None


def redact_argv(argv: Sequence[str]) -> list[str]:
    """The command line without secrets: ``--unlock VOLUME=KIND:VALUE`` keeps VOLUME and KIND
    (a key file's path is not a secret and is kept; its content never is recorded)."""
    out: list[str] = []
    after_unlock = False
    for arg in argv:
        if after_unlock or arg.startswith("--unlock="):
            prefix = "--unlock=" if arg.startswith("--unlock=") else ""
            value = arg[len(prefix) :]
            volume, _, rest = value.partition("=")
            kind, _, secret = rest.partition(":")
            if kind not in SECRET_KINDS:
                arg = f"{prefix}(withheld)"  # malformed: it may be the secret itself
            else:
                arg = f"{prefix}{volume}={kind}:{secret if kind == 'key-file' else '(withheld)'}"
        after_unlock = arg == "--unlock"
        out.append(arg)
    return out


def start_run(
    conn: Any,
    command: str,
    examiner: str | None,
    argv: Sequence[str] | None,
    options: Mapping[str, Any],
    evidence_ids: Sequence[str],
    plugin_versions: Mapping[str, str],
    details: Mapping[str, Any] | None = None,
) -> int:
    """Insert a ``running`` run and its custody entry (inside the caller's transaction).

    ``command`` is the run's command (``scan``, ``match`` ...); ``resumed``
    records a resumed scan (``details["resumed_run_id"]`` names the run).
    """
    details = dict(details or {})
    configured_signer()  # a key named but missing fails now, not at the end of the run
    resumed = details.get("resumed_run_id")
    tools = tool_versions()
    record = {
        "command": "scan" if command == "resumed" else command,
        "command_line": dumps(redact_argv(list(argv if argv is not None else sys.argv))),
        "examiner": examiner,
        "os_user": os_user(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started_utc": utc_now(),
        "status": "running",
        "resumed_run_id": resumed,
        "evidence_ids": dumps(list(evidence_ids)),
        "options": dumps(dict(options)),
        "examkit_version": __version__,
        "python_version": sys.version.split()[0],
        "tool_versions": dumps(tools),
        "plugin_versions": dumps(dict(plugin_versions)),
    }
    cols = ", ".join(record)
    run_id = conn.execute(
        f"INSERT INTO runs ({cols}) VALUES ({', '.join('?' * len(record))})",
        list(record.values()),
    ).lastrowid
    assert run_id is not None
    custody.append(
        conn,
        "run_resumed" if resumed else "run_started",
        examiner,
        {
            "run_id": run_id,
            "command": record["command"],
            "evidence_ids": list(evidence_ids),
            "examkit_version": __version__,
            "plugin_versions": dict(plugin_versions),
            "tool_versions": tools,
            **details,
        },
    )
    return int(run_id)


def finish_run(
    case: Case,
    run_id: int,
    status: str,
    actor: str | None,
    error: str | None,
    counts: Mapping[str, Any],
    ahead: StateAhead | None = None,
) -> None:
    """Close a run: its status and counts, a custody entry carrying the digest of every
    result table (``examkit.integrity``; ``ahead``'s, read while the caller went on, if
    nothing was written since it started), signed when the examiner has a key."""
    signer = configured_signer()
    with case.transaction() as conn:
        state = ahead.result(conn) if ahead is not None else None  # before this one writes
        conn.execute(
            "UPDATE runs SET status = ?, finished_utc = ?, error = ?, counts = ? WHERE run_id = ?",
            (status, utc_now(), error, dumps(dict(counts)), run_id),
        )
        action = {"complete": "run_finished", "interrupted": "run_interrupted"}.get(
            status, "run_failed"
        )
        details = {"run_id": run_id, "status": status, "error": error, **counts}
        if state is None:
            state = state_digest(conn)
        seq = custody.append(conn, action, actor, {**details, "state": state})
        if signer is not None:
            sign_entry(conn, signer, seq, actor)


def check_unchanged(case: Case) -> None:
    """Refuse to work on a case whose results were changed outside examkit."""
    _seq, problems = state_differences(case.conn)
    if problems:
        raise IntegrityError(
            f"the case database was changed outside examkit: {problems[0]}",
            "run 'examkit verify' for the full report; work on a verified copy",
        )
