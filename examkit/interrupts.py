"""Ctrl-C and SIGTERM around a run: held while the run is opened or closed on the record, so
a signal can never leave a run ``running`` behind; raised as KeyboardInterrupt in between."""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _raise(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


class RunSignals:
    """``with RunSignals() as sig:`` holds both signals; ``sig.release()`` makes them raise
    KeyboardInterrupt (at once for one that arrived while held) and ``sig.hold()`` holds them
    again. On exit the handlers are restored; a signal still held is dropped, since the
    block has recorded what it was doing. A signal ignored before (SIG_IGN) stays ignored;
    outside the main thread, where Python cannot set handlers, this does nothing."""

    def __init__(self) -> None:
        self.arrived: list[int] = []
        self._saved: dict[int, Any] = {}
        self._active = threading.current_thread() is threading.main_thread()

    def __enter__(self) -> RunSignals:
        if self._active:
            self._saved = {s: signal.getsignal(s) for s in SIGNALS}
            self.hold()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for signum, handler in self._saved.items():
            signal.signal(signum, handler)

    def _note(self, signum: int, frame: FrameType | None) -> None:
        self.arrived.append(signum)

    def _set(self, handler: Any) -> None:
        for signum in SIGNALS:
            if self._active and self._saved.get(signum) is not signal.SIG_IGN:
                signal.signal(signum, handler)

    def hold(self) -> None:
        """From now on a signal is noted, not acted on."""
        self._set(self._note)

    def release(self) -> None:
        """From now on a signal raises KeyboardInterrupt; raise it now for one that was held."""
        self._set(_raise)
        if self.arrived:
            self.arrived.clear()
            raise KeyboardInterrupt
