"""The built-in demo: a small synthetic disk image shipped with the package, scanned."""

from __future__ import annotations

import gzip
import json
import shutil
from importlib import resources
from pathlib import Path

from .errors import UsageError
from .hashsets import ImportResult, Library
from .models import ScanSummary
from .plugins import registry
from .scan import ScanOptions, scan

DEMO_IMAGE = "demo-disk.raw.gz"
DEMO_FACTS = "demo-disk.json"


def demo_facts() -> dict[str, str]:
    """What the shipped demo image is (its media hashes, how it was made)."""
    text = resources.files("examkit").joinpath("data", DEMO_FACTS).read_text("utf-8")
    facts: dict[str, str] = json.loads(text)
    return facts


def write_demo_image(folder: Path) -> Path:
    """Unpack the demo image into ``folder/evidence/`` and return its path."""
    target = folder / "evidence" / "demo-disk.raw"
    target.parent.mkdir(parents=True, exist_ok=True)
    source = resources.files("examkit").joinpath("data", DEMO_IMAGE)
    with source.open("rb") as raw, gzip.open(raw) as unpacked, open(target, "wb") as fh:
        shutil.copyfileobj(unpacked, fh, 1 << 20)
    target.chmod(0o444)  # evidence is read-only
    return target


def import_samples(library: Library) -> list[ImportResult]:
    """Import the shipped sample hash sets (``examkit_samples``) into ``library``."""
    samples = resources.files("examkit_samples")
    results = []
    for item in json.loads(samples.joinpath("samples.json").read_text("utf-8")):
        with resources.as_file(samples.joinpath(item["file"])) as path:
            results.append(
                library.import_set(
                    path,
                    item["name"],
                    item["kind"],
                    formats=registry().hashset_formats,
                    description=item.get("description"),
                )
            )
    return results


def run_demo(folder: Path, workers: int | None = None, examiner: str = "demo") -> ScanSummary:
    """Unpack the demo image into ``folder``, import the sample hash sets into
    ``folder/hashsets`` and scan the image into ``folder/demo-case.sqlite``."""
    folder.mkdir(parents=True, exist_ok=True)
    case_path = folder / "demo-case.sqlite"
    if case_path.exists():
        raise UsageError(
            f"{case_path} already exists", "give an empty folder with --dir, or remove it"
        )
    image = folder / "evidence" / "demo-disk.raw"
    if not image.exists():
        image = write_demo_image(folder)
    library = Library(folder / "hashsets")  # the demo never touches the examiner's library
    import_samples(library)
    options = ScanOptions(hashset_dir=str(library.path))
    if workers is not None:
        options.workers = workers
    facts = demo_facts()
    return scan(
        case_path,
        [image],
        examiner=examiner,
        evidence_id="DEMO-001",
        expected={"md5": facts["md5"], "sha256": facts["sha256"]},
        description="examkit demo disk (synthetic, harmless)",
        options=options,
        argv=["examkit", "demo", "--dir", str(folder)],
    )
