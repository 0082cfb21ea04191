"""What the scan's fork server loads before it forks workers (``examkit/preload.py``).

Every module it imports is on the critical path of each scan's start, and every
worker inherits it; image libraries are imported by a worker at its first image
instead (on 2 cores that is cheaper than loading them before the first unit).
"""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json, sys
import examkit.preload
print(json.dumps(sorted(m for m in sys.modules if "." not in m)))
"""


def _preloaded() -> set[str]:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_preload_loads_evidence_libraries_not_image_libraries() -> None:
    loaded = _preloaded()
    assert {"pytsk3", "magic", "examkit", "examkit_plugins"} <= loaded
    # numpy (~0.1 s), PIL and imagehash/scipy (~0.3 s) are left to the workers
    assert not loaded & {"numpy", "PIL", "imagehash", "scipy", "dask", "distributed"}
