"""What ``magic_subset`` and ``magic_binary`` read out of libmagic's database, kept between
runs.

Reading the compiled database into the smaller databases' conditions takes 0.17-0.3 s of
one core in every process that types heads (a local pool's fork server, each Dask worker),
before its first head. What is read is a function of the database's bytes and of the code
that reads them alone, so it is kept as plain JSON (never pickle: nothing in the file is
run) in a file named by the SHA-256 of both, with the SHA-256 of its content; loading it
takes ~0.03 s. A file that is missing, unreadable, altered or not what its name says is
read again from the database and written anew; the copies made from it are still checked
against the full database each time they are loaded (``magic_subset.load``,
``magic_binary.load``).

Folder: ``EXAMKIT_CACHE`` if set (``off``: nothing is kept), else the user cache folder
(platformdirs) ``.../examkit/magic``. A folder that cannot be written costs only the time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
FORMAT = 1
# the modules whose code decides what is read: a change to any of them is a new file name
_READERS = ("magic_subset.py", "magic_binary.py", "magic_cache.py")


def cache_folder() -> Path | None:
    """Where the files are kept, or None when keeping is off."""
    chosen = os.environ.get("EXAMKIT_CACHE", "").strip()  # empty counts as unset
    if chosen:
        return None if chosen.lower() == "off" else Path(chosen)
    import platformdirs

    return Path(platformdirs.user_cache_dir("examkit")) / "magic"


@lru_cache(maxsize=1)
def _code_digest() -> str | None:
    here = Path(__file__).parent
    digest = hashlib.sha256(str(FORMAT).encode())
    try:
        for name in _READERS:
            digest.update((here / name).read_bytes())
    except OSError:  # installed without its sources: nothing to name the files by
        return None
    return digest.hexdigest()


@lru_cache(maxsize=4)
def _database_digest(mgc: bytes) -> str:
    return hashlib.sha256(mgc).hexdigest()


def kept(
    kind: str,
    mgc: bytes,
    make: Callable[[bytes], T],
    encode: Callable[[T], Any],
    decode: Callable[[Any, bytes], T],
) -> T:
    """``make(mgc)``, or what an earlier run kept of it: ``encode`` gives its JSON-able
    form, ``decode`` builds it again (raising on anything unexpected, which rebuilds)."""
    folder, code = cache_folder(), _code_digest()
    if folder is None or code is None:
        return make(mgc)
    name = hashlib.sha256(f"{kind}:{_database_digest(mgc)}:{code}".encode()).hexdigest()
    path = folder / f"{kind}-{name}.json"
    try:  # a header line (the name, the SHA-256 of the rest), then the value
        header, _, body = path.read_bytes().partition(b"\n")
        expected = json.loads(header)
        if expected == {"key": name, "sha256": hashlib.sha256(body).hexdigest()}:
            return decode(json.loads(body), mgc)
    except Exception:  # missing, unreadable, cut short, altered or not ours: read again
        pass
    value = make(mgc)
    with contextlib.suppress(OSError):
        folder.mkdir(parents=True, exist_ok=True)
        body = json.dumps(encode(value), separators=(",", ":")).encode()
        seal = json.dumps({"key": name, "sha256": hashlib.sha256(body).hexdigest()})
        fd, tmp = tempfile.mkstemp(prefix=f".{kind}-", dir=folder)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(seal.encode() + b"\n" + body)
            os.replace(tmp, path)  # whole or not at all, for processes reading it meanwhile
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        _prune(folder, kind, path)
    return value


STALE_SECONDS = 30 * 86400  # another version's file unread this long is removed


def _prune(folder: Path, kind: str, current: Path) -> None:
    """Remove the files of other databases or readers (an upgrade leaves the old one) not
    used for ``STALE_SECONDS``; a file in use by another installation is kept."""
    cutoff = time.time() - STALE_SECONDS
    for other in folder.glob(f"{kind}-*.json"):
        with contextlib.suppress(OSError):
            info = other.stat()
            if other != current and max(info.st_atime, info.st_mtime) < cutoff:
                other.unlink()


def literal_rows(conditions: Any) -> list[Any]:
    """Conditions (``magic_subset.Condition``) as JSON: bytes as Latin-1 text."""
    return [[[[lit.mode, lit.offset, lit.data.decode("latin-1")] for lit in clause]
             for clause in cond] for cond in conditions]  # fmt: skip


def conditions_from(rows: Any) -> tuple[Any, ...]:
    """The conditions of ``literal_rows`` again."""
    from .magic_subset import Literal

    return tuple(
        tuple(tuple(Literal(int(m), int(o), str(d).encode("latin-1")) for m, o, d in clause)
              for clause in cond)
        for cond in rows
    )  # fmt: skip
