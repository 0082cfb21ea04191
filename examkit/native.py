"""The compiled hash-set helpers (``examkit/_hashset_native.c``), when they were built.

``pip install`` builds them when a C compiler is there; the extension is optional,
and every caller has a numpy path that gives the same results without it.
"""

from __future__ import annotations

from types import ModuleType


def helper() -> ModuleType | None:
    """The compiled module, or ``None`` when examkit was installed without it."""
    try:
        from . import _hashset_native
    except ImportError:
        return None
    return _hashset_native
