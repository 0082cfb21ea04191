"""``examkit config show``: the effective defaults and where each comes from."""

from __future__ import annotations

import typer

from examkit.config import KEYS, config_file, load_settings

from .render import out, print_json, table

config_app = typer.Typer(
    help=(
        "Defaults from the environment (EXAMKIT_*) and examkit.toml: EXAMKIT_CONFIG, else "
        "./examkit.toml, else examkit.toml in the user config folder. The command line wins."
    ),
    no_args_is_help=True,
)


def _text(value: object) -> str:
    """A value as it would be written in examkit.toml (None: empty)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@config_app.command("show")
def show_command(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Print every setting's effective value and where it came from (a broken file is an error)."""
    path = config_file()
    settings = load_settings()
    if as_json:
        print_json(
            {
                "file": str(path) if path else None,
                "settings": {
                    s.key: {"value": s.value, "source": s.source} for s in settings.values()
                },
            }
        )
        return
    out.print(
        table(
            f"Settings (config file: {path or 'none'})",
            ["key", "value", "source", "environment", "meaning"],
            (
                (s.key, _text(s.value), s.source, KEYS[s.key].env or "", KEYS[s.key].help)
                for s in settings.values()
            ),
        )
    )


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")
