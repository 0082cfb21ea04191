"""Where compiled hash sets live: the library folder and a set's folder in it.

No numpy here: ``examkit hashset lookup`` resolves its set through this module
before it knows whether it needs the numpy path (``examkit.fastlookup``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import UsageError

ENV = "EXAMKIT_HASHSETS"
MANIFEST = "manifest.json"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def default_dir() -> Path:
    if os.environ.get(ENV):
        return Path(os.environ[ENV])
    import platformdirs

    return Path(platformdirs.user_data_dir("examkit")) / "hashsets"


def set_folder(library: Path, name: str) -> Path:
    """The folder of the set called ``name`` in ``library`` (it must exist)."""
    folder = library / name
    if not NAME.match(name) or not (folder / MANIFEST).is_file():
        raise UsageError(
            f"no hash set named {name!r} in {library}",
            "'examkit hashset list' shows the sets; import one with 'examkit hashset import'",
        )
    return folder
