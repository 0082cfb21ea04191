"""A scan on a Dask cluster (a real LocalCluster with process workers) equals a local scan."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from examkit.errors import UsageError
from examkit.executors import map_path
from examkit.scan import ScanOptions, scan
from tests.conftest import comparable_rows

distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed")


@pytest.fixture(scope="module")
def cluster() -> object:
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
        silence_logs=40,
    ) as local:  # fmt: skip
        yield local


def test_cluster_scan_equals_local_scan(
    cluster: object, fixture_images: Path, tmp_path: Path
) -> None:
    image = fixture_images / "ntfs.raw"
    local_case, cluster_case = tmp_path / "local.sqlite", tmp_path / "cluster.sqlite"
    scan(local_case, [image], options=ScanOptions(workers=2), argv=["pytest"])
    # the workers see the evidence under another mount point: --path-map
    shared = tmp_path / "shared"
    shared.mkdir()
    shutil.copy(image, shared / "ntfs.raw")
    here = tmp_path / "here"
    here.symlink_to(shared)  # what this machine calls the same storage
    options = ScanOptions(
        cluster=cluster.scheduler_address,  # type: ignore[attr-defined]
        path_map=((str(here), str(shared)),),
    )
    summary = scan(cluster_case, [here / "ntfs.raw"], options=options, argv=["pytest"])
    assert summary.status == "complete"
    skip = frozenset({"file_id", "evidence_id", "run_id", "volume_id", "filesystem_id"})
    assert comparable_rows(cluster_case, skip) == comparable_rows(local_case, skip)


def test_unreachable_scheduler_is_one_clear_error(
    fixture_images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from examkit import executors

    monkeypatch.setattr(executors, "CONNECT_TIMEOUT", 2)
    options = ScanOptions(cluster="tcp://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(UsageError, match="cannot reach the Dask scheduler"):
        scan(tmp_path / "c.sqlite", [fixture_images / "fat16.raw"], options=options)


def test_path_map() -> None:
    mapping = (("/mnt/evidence", "/shared/lab/evidence"), ("/a", "/b"))
    assert (
        map_path("/mnt/evidence/case1/disk.E01", mapping) == "/shared/lab/evidence/case1/disk.E01"
    )
    assert map_path("/mnt/evidence2/x", mapping) == "/mnt/evidence2/x"  # a prefix, not a match
    assert map_path("/a", mapping) == "/b"
