"""A module imported on first use of one of its attributes."""

from __future__ import annotations

import importlib
import threading
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

    def load_in_background(self) -> None:
        """Import the module now on a thread of its own (the first use then waits for it,
        if it has not finished): for a process that is about to wait anyway."""
        if self._module is None:
            threading.Thread(target=self._load, name=f"import-{self._name}", daemon=True).start()

    def _load(self) -> None:
        module = importlib.import_module(self._name)
        self._module = module
