"""Options of perceptual matching shared by ``scan`` and ``match``."""

from __future__ import annotations

import typer

from examkit.matching import NearOptions

PDQ_THRESHOLD = typer.Option(
    NearOptions.pdq_threshold, "--pdq-threshold", min=0, max=128,
    help="PDQ near match: at most this many of 256 bits differ (quality >= 50 only).",
)  # fmt: skip
PHASH_THRESHOLD = typer.Option(
    NearOptions.phash_threshold, "--phash-threshold", min=0, max=32,
    help="pHash near match: at most this many of 64 bits differ.",
)  # fmt: skip


def near_options(pdq_threshold: int, phash_threshold: int, enabled: bool = True) -> NearOptions:
    return NearOptions(pdq_threshold=pdq_threshold, phash_threshold=phash_threshold,
                       enabled=enabled)  # fmt: skip
