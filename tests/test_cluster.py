"""A scan on a Dask cluster (a real LocalCluster with process workers) equals a local scan."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from examkit import filetype, hashing
from examkit.errors import UsageError
from examkit.executors import map_path
from examkit.scan import ScanOptions, scan
from tests.conftest import comparable_rows, run_count

distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed")


@pytest.fixture(scope="module")
def cluster() -> object:
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
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
    # the run records how the cluster's workers typed, as they said it (one answer each,
    # the same here: the same machine)
    assert run_count(cluster_case, "typed_by") == run_count(local_case, "typed_by")
    assert run_count(cluster_case, "typed_by").startswith(
        f"libmagic {filetype.libmagic_version()}: "
    )
    # and how they computed the digests: each Dask worker checked the one-pass digest itself
    assert run_count(cluster_case, "digested_by") == run_count(local_case, "digested_by")
    assert run_count(cluster_case, "digested_by") == hashing.digests_used()


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


def test_unit_of_a_lost_worker_is_resubmitted(
    cluster: object, fixture_images: Path, tmp_path: Path
) -> None:
    """A worker process that dies while hashing a unit: the scheduler runs the unit again on
    another worker and the scan still equals the local one."""
    image = fixture_images / "ntfs.raw"
    local_case, cluster_case = tmp_path / "local.sqlite", tmp_path / "cluster.sqlite"
    scan(local_case, [image], options=ScanOptions(workers=2, confirm_media=False))
    marker = str(tmp_path / "a-worker-died")

    def die_once_in_a_unit() -> None:  # runs in every worker process (by value, a closure)
        import os

        from examkit import worker

        original = worker.hash_unit

        def hash_unit(unit: object) -> object:
            try:  # the first unit to get here, on whichever worker, kills its process
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return original(unit)  # type: ignore[arg-type]
            os._exit(1)

        worker.hash_unit = hash_unit  # type: ignore[assignment]

    client = distributed.Client(cluster.scheduler_address)  # type: ignore[attr-defined]
    try:
        client.run(die_once_in_a_unit)
        options = ScanOptions(cluster=cluster.scheduler_address, confirm_media=False)  # type: ignore[attr-defined]
        summary = scan(cluster_case, [image], options=options)
    finally:
        client.restart()  # fresh workers (the patch gone) for any later test
        client.close()
    assert Path(marker).exists(), "no worker was killed: the test proved nothing"
    assert summary.status == "complete"
    skip = frozenset({"file_id", "evidence_id", "run_id", "volume_id", "filesystem_id"})
    assert comparable_rows(cluster_case, skip) == comparable_rows(local_case, skip)


def test_unit_that_kills_every_worker_fails_the_evidence_not_the_parent(
    fixture_images: Path, tmp_path: Path
) -> None:
    """When the scheduler gives up on a unit (KilledWorker), the evidence item is recorded as
    failed with a one-line reason, the run ends ``failed`` and what was written stays."""
    import dask

    marker = str(tmp_path / "a-worker-died")

    def die_once_in_a_unit() -> None:
        import os

        from examkit import worker

        original = worker.hash_unit

        def hash_unit(unit: object) -> object:
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return original(unit)  # type: ignore[arg-type]
            os._exit(1)

        worker.hash_unit = hash_unit  # type: ignore[assignment]

    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 0}),
        distributed.LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            silence_logs=50,
        ) as strict,
        distributed.Client(strict) as client,
    ):
        client.run(die_once_in_a_unit)
        options = ScanOptions(cluster=strict.scheduler_address, confirm_media=False)
        summary = scan(tmp_path / "c.sqlite", [fixture_images / "ntfs.raw"], options=options)
    assert Path(marker).exists()
    assert summary.status == "failed"
    from examkit.case import Case

    with Case.open(tmp_path / "c.sqlite") as case:
        row = case.conn.execute("SELECT scan_status FROM evidence").fetchone()
        failed = case.conn.execute(
            "SELECT details FROM custody_log WHERE action = 'evidence_failed'"
        ).fetchone()
    assert row[0] == "failed"
    assert "worker process died" in failed[0]
