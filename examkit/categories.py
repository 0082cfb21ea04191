"""Category profiles: what a known-bad set's category numbers mean, and which alert.

Category numbering differs by country, programme and tool (Project VIC US,
Canada, UK CAID ...), and the definitions are shared with law enforcement
only. examkit therefore keeps the raw number from the set with every match
and labels it through a profile the lab supplies as JSON::

    {"name": "our-lab", "description": "...",
     "categories": {"1": {"label": "...", "alert": true},
                    "0": {"label": "...", "alert": false}},
     "default": {"label": "Category {n}", "alert": true}}

A category whose ``alert`` is false (for example a "not pertinent" class) is
recorded but does not flag the file. The built-in ``numeric`` profile labels
every number "Category N" and alerts on all of them, the safe default.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import UsageError

NUMERIC: dict[str, Any] = {
    "name": "numeric",
    "description": "raw category numbers; every category alerts (examkit default)",
    "categories": {},
    "default": {"label": "Category {n}", "alert": True},
}
BUILTIN = {"numeric": NUMERIC}


def load_profile(spec: str | None, search: Path | None = None) -> dict[str, Any]:
    """A profile by built-in name, by name in ``search`` (``NAME.json``), or from a file."""
    if not spec:
        return NUMERIC
    if spec in BUILTIN:
        return BUILTIN[spec]
    candidates = [Path(spec)]
    if search is not None:
        candidates.append(search / f"{spec}.json")
    for path in candidates:
        if path.is_file():
            try:
                profile = json.loads(path.read_text("utf-8"))
                _check(profile)
            except (ValueError, TypeError, KeyError) as exc:
                raise UsageError(
                    f"category profile {path} is not valid: {exc}",
                    "see docs/hashsets.md for the profile format",
                ) from exc
            return dict(profile)
    raise UsageError(
        f"no category profile {spec!r}",
        "give a JSON file, or a built-in name: " + ", ".join(BUILTIN),
    )


def _check(profile: Any) -> None:
    if not isinstance(profile, dict) or not isinstance(profile.get("categories"), dict):
        raise TypeError("expected an object with a 'categories' object")
    for key, value in profile["categories"].items():
        int(key)
        if not isinstance(value, dict) or "label" not in value:
            raise KeyError(f"category {key} needs a 'label'")
    profile.setdefault("name", "custom")
    profile.setdefault("default", NUMERIC["default"])


def describe(profile: dict[str, Any], category: int | None) -> tuple[str | None, bool]:
    """``(label, alert)`` for a raw category number (``None``: the set gave none)."""
    default = profile.get("default", NUMERIC["default"])
    if category is None:
        return None, bool(default.get("alert", True))
    entry = profile.get("categories", {}).get(str(category), default)
    label = str(entry.get("label", "Category {n}")).replace("{n}", str(category))
    return label, bool(entry.get("alert", True))
