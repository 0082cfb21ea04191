"""``examkit plugins``: what is loaded, with versions."""

from __future__ import annotations

from dataclasses import asdict

import typer

from examkit.plugins import registry

from .render import out, print_json, table


def plugins(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List every loaded plugin (first-party and third-party) with its version."""
    records = registry().records()
    if as_json:
        print_json([asdict(r) for r in records])
        return
    out.print(
        table(
            "Plugins",
            ["kind", "name", "version", "package", "description"],
            ((r.kind, r.name, r.version, r.distribution, r.description) for r in records),
        )
    )


def register(app: typer.Typer) -> None:
    app.command("plugins")(plugins)
