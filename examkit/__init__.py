"""examkit: a forensic examiner's toolkit (library API).

Open seized disk images, walk every volume, file system and file, hash each
stream in one read and record everything in a chain-of-custody case database.
The CLI in ``examkit.cli`` is a thin layer over these functions.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
