"""Defaults from EXAMKIT_* and examkit.toml: precedence, ``config show``, wiring into commands."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import platformdirs
import pytest
import typer

from examkit.cli.app import app, main
from examkit.config import COMMAND_PARAMS, KEYS, config_file, default_map, load_settings
from examkit.errors import UsageError
from examkit.executors import default_workers

ENV_NAMES = ("EXAMKIT_CONFIG", *(k.env for k in KEYS.values() if k.env))


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _own_hashset_library: None) -> Path:
    """A clean working folder; no EXAMKIT_* variables; user folders under ``tmp_path``."""
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    user = tmp_path / "user"
    monkeypatch.setattr(platformdirs, "user_config_dir", lambda *a, **k: str(user / "config"))
    monkeypatch.setattr(platformdirs, "user_data_dir", lambda *a, **k: str(user / "data"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def show(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    code, out, err = run(capsys, "config", "show", "--json")
    assert code == 0, err
    return json.loads(out)  # type: ignore[no-any-return]


def test_built_in_defaults_without_a_file(capsys, home: Path, tmp_path: Path) -> None:
    data = show(capsys)
    assert data["file"] is None
    assert {s["source"] for s in data["settings"].values()} == {"default"}
    values = {k: s["value"] for k, s in data["settings"].items()}
    assert values == {
        "examiner": None,
        "hashset_dir": str(tmp_path / "user" / "data" / "hashsets"),
        "workers": default_workers(),
        "cluster": None,
        "perceptual": True,
        "pdq_threshold": 31,
        "phash_threshold": 8,
    }


def test_environment_beats_file_beats_default(capsys, home: Path, monkeypatch) -> None:
    toml = home / "examkit.toml"
    toml.write_text('examiner = "File Examiner"\nworkers = 3\ncluster = "tcp://file:8786"\n')
    monkeypatch.setenv("EXAMKIT_WORKERS", "5")
    monkeypatch.setenv("EXAMKIT_CLUSTER", "")  # empty: unset, as click has it
    data = show(capsys)
    assert data["file"] == str(toml)
    got = {k: (s["value"], s["source"]) for k, s in data["settings"].items()}
    assert got["workers"] == (5, "environment EXAMKIT_WORKERS")
    assert got["examiner"] == ("File Examiner", f"file {toml}")
    assert got["cluster"] == ("tcp://file:8786", f"file {toml}")
    assert got["pdq_threshold"] == (31, "default")

    code, out, _ = run(capsys, "config", "show")
    assert code == 0
    assert "environment EXAMKIT_WORKERS" in out and "File Examiner" in out and "default" in out


def test_command_line_overrides_beat_everything(home: Path) -> None:
    (home / "examkit.toml").write_text("workers = 3\n")
    settings = load_settings(environ={"EXAMKIT_WORKERS": "5"}, overrides={"workers": 1})
    assert (settings["workers"].value, settings["workers"].source) == (1, "command line")


def test_relative_hashset_dir_is_relative_to_the_file(capsys, home: Path, tmp_path, monkeypatch):
    elsewhere = tmp_path / "lab"
    elsewhere.mkdir()
    (elsewhere / "lab.toml").write_text('hashset_dir = "sets"\n')
    monkeypatch.setenv("EXAMKIT_CONFIG", str(elsewhere / "lab.toml"))
    assert show(capsys)["settings"]["hashset_dir"]["value"] == str(elsewhere / "sets")
    # ... and the hashset commands use it
    code, out, err = run(capsys, "hashset", "list")
    assert code == 0, err
    assert str(elsewhere / "sets") in out


def test_which_file_applies(home: Path, tmp_path: Path, monkeypatch) -> None:
    user_file = tmp_path / "user" / "config" / "examkit.toml"
    user_file.parent.mkdir(parents=True)
    user_file.write_text("workers = 1\n")
    assert config_file() == user_file
    (home / "examkit.toml").write_text("workers = 2\n")
    assert config_file() == home / "examkit.toml"  # the working folder's beats the user's
    (tmp_path / "named.toml").write_text("workers = 4\n")
    monkeypatch.setenv("EXAMKIT_CONFIG", "../named.toml")  # relative to the working folder
    assert config_file() == home / ".." / "named.toml"
    assert load_settings()["workers"].value == 4
    monkeypatch.setenv("EXAMKIT_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(UsageError, match=r"missing\.toml"):
        config_file()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('examiner = "x"\nwokers = 3\n', ":2: unknown key 'wokers' (did you mean 'workers'?)"),
        ('\n\nworkers = "three"\n', ":3: workers must be a whole number, not 'three'"),
        ("workers = -1\n", ":1: workers must be at least 0, not -1"),
        ("pdq_threshold = 200\n", ":1: pdq_threshold must be from 0 to 128, not 200"),
        ("perceptual = 1\n", ":1: perceptual must be true or false, not 1"),
        ("[scan]\nworkers = 1\n", ":1: unknown key 'scan'"),
        ("workers = = 3\n", ": not valid TOML: "),
    ],
)
def test_broken_file_is_a_one_line_error(capsys, home: Path, text: str, expected: str) -> None:
    toml = home / "examkit.toml"
    toml.write_text(text)
    for args in (["config", "show"], ["scan", "x.raw", "--case", "c.sqlite"], ["hashset", "list"]):
        code, out, err = run(capsys, *args)
        lines = err.splitlines()
        assert code == 2 and not out
        assert lines[0].startswith(f"examkit: error: {toml}") and expected in lines[0]
        assert len(lines) == 2 and lines[1].startswith("hint: ")
    # help, version and commands that take no setting still work
    assert run(capsys, "--help")[0] == 0
    assert run(capsys, "--version")[0] == 0
    code, out, _ = run(capsys, "scan", "--help")
    assert code == 0 and "--workers" in out
    assert run(capsys, "plugins", "--json")[0] == 0


def test_bad_environment_value(capsys, home: Path, monkeypatch) -> None:
    monkeypatch.setenv("EXAMKIT_WORKERS", "many")
    code, _, err = run(capsys, "config", "show")
    assert code == 2 and "EXAMKIT_WORKERS='many'" in err and "Traceback" not in err


def test_default_map_holds_environment_and_file_values_only(home: Path) -> None:
    (home / "examkit.toml").write_text('perceptual = false\nhashset_dir = "lib"\n')
    tree = default_map(environ={"EXAMKIT_EXAMINER": "Env"})
    lib = str(home / "lib")
    assert tree["scan"] == {"examiner": "Env", "hashset_dir": lib, "no_perceptual": True}
    assert tree["batch"] == {"examiner": "Env", "hashset_dir": lib}  # perceptual: jobs file
    assert tree["match"] == {"examiner": "Env", "folder": lib, "no_perceptual": True}
    assert tree["hashset"]["import"] == {"folder": lib}
    assert tree["case"]["init"] == {"examiner": "Env"}


def test_mapped_parameters_exist() -> None:
    """Every (command, parameter) of the map is a real option: a rename would silently drop it."""
    root = typer.main.get_command(app)
    for path, params in COMMAND_PARAMS.items():
        command: Any = root
        for name in path:
            command = command.commands.get(name) if command is not None else None
        assert command is not None, path
        names = {p.name for p in command.params}
        assert set(params.values()) <= names, (path, set(params.values()) - names)


def _run_options(case: Path) -> list[dict[str, Any]]:
    conn = sqlite3.connect(case)
    try:
        rows = conn.execute("SELECT options, examiner FROM runs ORDER BY run_id").fetchall()
    finally:
        conn.close()
    return [{**json.loads(options), "examiner": examiner} for options, examiner in rows]


def test_scan_takes_its_defaults_from_the_file(
    capsys, home: Path, fixture_images: Path, monkeypatch
) -> None:
    image = str(fixture_images / "fat16.raw")
    (home / "examkit.toml").write_text(
        'examiner = "File Examiner"\nworkers = 1\nhashset_dir = "lib"\nperceptual = false\n'
        "pdq_threshold = 20\n"
    )
    code, _, err = run(capsys, "scan", image, "--case", "a.sqlite", "--json", "--no-confirm")
    assert code == 0, err
    (first,) = _run_options(home / "a.sqlite")
    assert first["workers"] == 1 and first["examiner"] == "File Examiner"
    assert first["hashset_dir"] == str(home / "lib")
    assert first["perceptual"] is False and first["near"]["pdq_threshold"] == 20

    # the command line beats the file
    code, _, err = run(capsys, "scan", image, "--case", "b.sqlite", "--json", "--no-confirm",
                       "--workers", "0", "-e", "Cli Examiner")  # fmt: skip
    assert code == 0, err
    (second,) = _run_options(home / "b.sqlite")
    assert second["workers"] == 0 and second["examiner"] == "Cli Examiner"

    # the environment beats the file
    monkeypatch.setenv("EXAMKIT_WORKERS", "0")
    code, _, err = run(capsys, "scan", image, "--case", "c.sqlite", "--json", "--no-confirm")
    assert code == 0, err
    (third,) = _run_options(home / "c.sqlite")
    assert third["workers"] == 0 and third["examiner"] == "File Examiner"
