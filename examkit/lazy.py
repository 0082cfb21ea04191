"""A module imported on first use of one of its attributes."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule:
    """Stands for a module until an attribute is read: then imports it (once) and hands
    over the attribute. For heavy modules a command may not need before its real work
    starts (numpy, in a scan's parent: the listing starts 0.1 s earlier without it)."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attr)
