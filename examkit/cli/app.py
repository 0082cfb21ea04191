"""The ``examkit`` command: exit codes, error lines, and the command groups."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence

import typer

try:  # typer >= 0.20 carries its own copy of click
    from typer._click import exceptions as click_exc
except ImportError:  # pragma: no cover - older typer uses click itself
    from click import exceptions as click_exc  # type: ignore[no-redef]

from examkit import __version__
from examkit.config import default_map
from examkit.errors import ExamkitError

from . import (
    batch_cmd,
    case_cmds,
    config_cmd,
    demo_cmd,
    export_cmd,
    files_cmd,
    hashset_cmds,
    match_cmds,
    plugins_cmd,
    report_cmd,
    scan_cmd,
    verify_cmds,
)
from .entry import error_line

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTEGRITY = 0, 1, 2, 3

app = typer.Typer(
    name="examkit",
    help=(
        "Forensic examiner's toolkit: scan seized disk images, hash every file, "
        "match reference hash sets, and keep a chain-of-custody case database.\n\n"
        "Exit codes: 0 ok, 1 error, 2 usage, 3 integrity failure (hash mismatch, failed verify),"
        " 4 batch finished with failed items."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"examkit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """examkit."""
    # EXAMKIT_* and examkit.toml, for options not given (a broken file fails when it is used)
    ctx.default_map = default_map()


scan_cmd.register(app)
batch_cmd.register(app)
case_cmds.register(app)
files_cmd.register(app)
hashset_cmds.register(app)
match_cmds.register(app)
verify_cmds.register(app)
report_cmd.register(app)
export_cmd.register(app)
plugins_cmd.register(app)
demo_cmd.register(app)
config_cmd.register(app)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: returns the exit code (errors are one line plus a hint)."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        result = app(args=args, prog_name="examkit", standalone_mode=False)
    except ExamkitError as exc:
        if debug:
            traceback.print_exc()
        error_line(exc.message, exc.hint)
        return exc.exit_code
    except click_exc.NoArgsIsHelpError as exc:
        typer.echo(exc.ctx.get_help() if exc.ctx else "")
        return EXIT_OK
    except click_exc.ClickException as exc:
        if debug:
            traceback.print_exc()
        error_line(exc.format_message(), "run the command with --help for its options")
        return EXIT_USAGE if exc.exit_code == 2 else exc.exit_code
    except (KeyboardInterrupt, typer.Abort):
        error_line("interrupted", "nothing half-written was kept; run the command again")
        return 130
    except Exception as exc:
        if debug:
            traceback.print_exc()
        error_line(
            f"internal error: {type(exc).__name__}: {exc}",
            "run again with --debug and report the traceback",
        )
        return EXIT_ERROR
    if result == 130:  # typer turns a KeyboardInterrupt outside a scan into exit 130, silently
        error_line("interrupted", "nothing half-written was kept; run the command again")
    return int(result) if isinstance(result, int) else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
