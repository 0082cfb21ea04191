"""``examkit verify`` and ``examkit key generate``."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import typer

from examkit.display import safe_text
from examkit.runs import os_user
from examkit.signing import ENV, default_key_path, generate_key
from examkit.verification import verify_case

from .render import err, out, print_json
from .scan_cmd import EXAMINER_ENV

key_app = typer.Typer(help="Examiner signing keys (Ed25519).", no_args_is_help=True)


def verify_command(
    case: Path = typer.Argument(..., help="Case database."),
    rehash: bool = typer.Option(
        False, "--rehash", help="Also read every evidence item again and compare media hashes."
    ),
    examiner: str = typer.Option(None, "--examiner", "-e", envvar=EXAMINER_ENV),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Check the custody chain, every signature, and that no result row changed since the
    last recorded state. Exit code 3 on any failure."""
    report = verify_case(case, rehash, examiner or os_user())
    if as_json:
        print_json(asdict(report))
    elif report.ok:
        state = f"results match custody entry {report.state_seq}" if report.state_seq else ""
        rehashed = (
            f", {len(report.rehashed)} evidence item(s) re-read and matching" if rehash else ""
        )
        out.print(
            f"verified: {report.chain}; {report.signatures} signature(s) valid; {state}{rehashed}",
            markup=False,
        )
    else:
        err.print(f"VERIFICATION FAILED: {safe_text(report.problems[0])}", markup=False)
        for problem in report.problems[1:]:
            err.print(f"  also: {safe_text(problem)}", markup=False)
    if not report.ok:
        raise typer.Exit(3)


@key_app.command("generate")
def key_generate(
    out_path: Path = typer.Option(
        None, "--out", "-o", help=f"Private key file (default: the user config folder; or {ENV})."
    ),
    force: bool = typer.Option(False, "--force", help="Replace an existing key file."),
) -> None:
    """Make an Ed25519 key pair; run ends and reports are then signed with it."""
    path = out_path or default_key_path()
    public, kid = generate_key(path, overwrite=force)
    out.print(f"private key: {path} (mode 0600; keep it safe)", markup=False)
    out.print(f"public key:  {public}", markup=False)
    out.print(f"key id:      {kid}", markup=False)
    if out_path is not None and path != default_key_path():
        out.print(f"to sign with it: export {ENV}={path}", markup=False)


def register(app: typer.Typer) -> None:
    app.command("verify")(verify_command)
    app.add_typer(key_app, name="key")
