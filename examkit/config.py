"""Defaults from environment variables and an ``examkit.toml`` file.

Precedence, highest first: the command line, environment variables (``EXAMKIT_*``), the
config file, built-in defaults. The file is the one named by ``EXAMKIT_CONFIG`` (it must
exist), else ``examkit.toml`` in the working folder, else ``examkit.toml`` in the user
config folder. The command line is applied by click: :func:`default_map` hands it the
environment and file values, which click uses only for options not given.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ExamkitError, UsageError

FILE_NAME = "examkit.toml"
CONFIG_ENV = "EXAMKIT_CONFIG"


@dataclass(frozen=True)
class Setting:
    """One key's effective value and where it came from."""

    key: str
    value: Any
    source: str  # "command line" | "environment EXAMKIT_X" | "file /path/examkit.toml" | "default"


@dataclass(frozen=True)
class Key:
    """A config key: its type, environment variable and built-in default."""

    name: str
    kind: type
    env: str | None
    default: Callable[[], Any]
    low: int | None = None
    high: int | None = None
    help: str = ""


def _default_workers() -> int:
    from .executors import default_workers

    return default_workers()


def _default_hashset_dir() -> str:
    import platformdirs

    return str(Path(platformdirs.user_data_dir("examkit")) / "hashsets")


def _near_default(name: str) -> Callable[[], int]:
    def default() -> int:
        from .matching import NearOptions

        return int(getattr(NearOptions, name))

    return default


KEYS: dict[str, Key] = {
    k.name: k
    for k in (
        Key("examiner", str, "EXAMKIT_EXAMINER", lambda: None, help="who runs the commands"),
        Key(
            "hashset_dir",
            Path,
            "EXAMKIT_HASHSETS",
            _default_hashset_dir,
            help="hash-set library folder",
        ),
        Key(
            "workers",
            int,
            "EXAMKIT_WORKERS",
            _default_workers,
            low=0,
            help="worker processes (0: none)",
        ),
        Key("cluster", str, "EXAMKIT_CLUSTER", lambda: None, help="Dask scheduler address"),
        Key("perceptual", bool, None, lambda: True, help="perceptual hashes of images"),
        Key(
            "pdq_threshold",
            int,
            None,
            _near_default("pdq_threshold"),
            low=0,
            high=128,
            help="PDQ near-match distance",
        ),
        Key(
            "phash_threshold",
            int,
            None,
            _near_default("phash_threshold"),
            low=0,
            high=32,
            help="pHash near-match distance",
        ),
    )
}

# Which option parameter of which command takes each key (nested by command name, as click's
# default_map is). ``perceptual`` maps to the negated ``no_perceptual`` flag.
_SCAN_PARAMS = {
    "examiner": "examiner",
    "hashset_dir": "hashset_dir",
    "workers": "workers",
    "cluster": "cluster",
    "perceptual": "no_perceptual",
    "pdq_threshold": "pdq_threshold",
    "phash_threshold": "phash_threshold",
}
_EXAMINER = {"examiner": "examiner"}
_LIBRARY = {"hashset_dir": "folder"}
COMMAND_PARAMS: dict[tuple[str, ...], dict[str, str]] = {
    ("scan",): _SCAN_PARAMS,
    # batch: perceptual settings come from the jobs file
    ("batch",): {
        k: v
        for k, v in _SCAN_PARAMS.items()
        if k in ("examiner", "hashset_dir", "workers", "cluster")
    },
    ("match",): {
        "examiner": "examiner",
        "hashset_dir": "folder",
        "perceptual": "no_perceptual",
        "pdq_threshold": "pdq_threshold",
        "phash_threshold": "phash_threshold",
    },
    ("hits",): _EXAMINER,
    ("verify",): _EXAMINER,
    ("report",): _EXAMINER,
    ("case", "init"): _EXAMINER,
    ("evidence", "add"): _EXAMINER,
    **{("hashset", name): _LIBRARY for name in ("import", "list", "show", "remove", "lookup")},
}


def config_file(cwd: Path | None = None, environ: Mapping[str, str] | None = None) -> Path | None:
    """The config file that applies, or None; raises UsageError if EXAMKIT_CONFIG is missing."""
    env = os.environ if environ is None else environ
    here = Path.cwd() if cwd is None else cwd
    named = env.get(CONFIG_ENV)
    if named:
        path = Path(named).expanduser()
        path = path if path.is_absolute() else here / path
        if not path.is_file():
            raise UsageError(
                f"{CONFIG_ENV} names {path}, which is not a file",
                f"create the file or unset {CONFIG_ENV}",
            )
        return path
    local = here / FILE_NAME
    if local.is_file():
        return local
    import platformdirs

    user = Path(platformdirs.user_config_dir("examkit")) / FILE_NAME
    return user if user.is_file() else None


def _line_of(text: str, key: str) -> int | None:
    """The line of ``key =`` (or ``[key]``, ``key.sub =``) in the raw text."""
    quoted = rf"[\"']?{re.escape(key)}[\"']?"
    pattern = rf"^[ \t]*(?:\[+[ \t]*{quoted}[ \t]*[].]|{quoted}[ \t]*[=.])"
    match = re.search(pattern, text, re.MULTILINE)
    return text.count("\n", 0, match.start()) + 1 if match else None


def _check(key: Key, value: Any) -> str | None:
    """Why ``value`` is wrong for ``key``, or None when it is right."""
    if key.kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            return "must be a whole number"
        if key.low is not None and value < key.low:
            return f"must be at least {key.low}" if key.high is None else _range(key)
        if key.high is not None and value > key.high:
            return _range(key)
        return None
    if key.kind is bool:
        return None if isinstance(value, bool) else "must be true or false"
    return None if isinstance(value, str) else "must be a string"


def _range(key: Key) -> str:
    return f"must be from {key.low} to {key.high}"


def read_file(path: Path) -> dict[str, Any]:
    """The checked settings of one config file (hashset_dir made absolute); UsageError if bad."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read config file {path}: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}", "see docs/cli.md") from None
    values: dict[str, Any] = {}
    for name, value in data.items():
        line = _line_of(text, name)
        where = f"{path}:{line}" if line else str(path)
        key = KEYS.get(name)
        if key is None:
            close = difflib.get_close_matches(name, KEYS, n=1)
            raise UsageError(
                f"{where}: unknown key {name!r}"
                + (f" (did you mean {close[0]!r}?)" if close else ""),
                "keys: " + ", ".join(KEYS),
            )
        problem = _check(key, value)
        if problem:
            raise UsageError(f"{where}: {name} {problem}, not {value!r}", "see docs/cli.md")
        if key.kind is Path:
            folder = Path(value).expanduser()
            value = str(folder if folder.is_absolute() else path.parent / folder)
        values[name] = value
    return values


def _from_env(key: Key, text: str) -> Any:
    if key.kind is not int:
        return text
    try:
        value = int(text.strip())
    except ValueError:
        value = None
    if value is None or _check(key, value):
        raise UsageError(
            f"environment {key.env}={text!r}: must be a whole number"
            + (f" of at least {key.low}" if key.low is not None else ""),
            f"fix or unset {key.env}",
        )
    return value


def load_settings(
    cwd: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    only: str | None = None,
) -> dict[str, Setting]:
    """Every key's (or ``only`` one key's) effective value: ``overrides`` (the command line),
    environment, file, default.

    Raises UsageError for a broken config file or a bad environment value.
    """
    env = os.environ if environ is None else environ
    path = config_file(cwd, env)
    from_file = read_file(path) if path else {}
    settings: dict[str, Setting] = {}
    for name, key in KEYS.items():
        if only is not None and name != only:
            continue  # a built-in default may import a lot (workers, thresholds)
        if overrides and overrides.get(name) is not None:
            settings[name] = Setting(name, overrides[name], "command line")
        elif key.env and env.get(key.env):  # empty counts as unset, as click has it
            settings[name] = Setting(name, _from_env(key, env[key.env]), f"environment {key.env}")
        elif name in from_file:
            settings[name] = Setting(name, from_file[name], f"file {path}")
        else:
            settings[name] = Setting(name, key.default(), "default")
    return settings


def _nest(values: Mapping[str, Any]) -> dict[str, Any]:
    """``{key: value}`` to click's nested ``{command: {subcommand: {param: value}}}``."""
    tree: dict[str, Any] = {}
    for path, params in COMMAND_PARAMS.items():
        node = tree
        for name in path:
            node = node.setdefault(name, {})
        for key, param in params.items():
            if key in values:
                value = values[key]
                negate = param == "no_perceptual" and not callable(value)
                node[param] = (not value) if negate else value
    return tree


def default_map(
    cwd: Path | None = None, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Click's ``default_map`` for the root command: environment and file values, nested by command.

    Built-in defaults are left to the options themselves. A broken file or environment value
    does not raise here: every mapped parameter gets a callable that raises the error when click
    resolves it, so ``--help`` still works and commands that take no setting are unaffected.
    """
    try:
        settings = load_settings(cwd, environ)
    except ExamkitError as exc:
        error = exc

        def fail() -> Any:
            raise error

        return _nest({name: fail for name in KEYS})
    return _nest({s.key: s.value for s in settings.values() if s.source != "default"})
