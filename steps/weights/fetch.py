"""Fetch a model into the cache: list once, reuse what is there, download the rest, seal it.

This is the library behind the `fetch-weights` step; `steps.fetch.fetch_weights` is the thin
Argo-facing wrapper. Calling `fetch_model` directly is how tests and `make demo` use it.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from steps.errors import SourceError, StepError
from steps.weights.cache import CachedFile, CacheEntry, Verify, listing_digest
from steps.weights.checksum import MiB, file_checksum
from steps.weights.download import Downloader
from steps.weights.partial import PartialFile
from steps.weights.plan import FilePlan, plan_file
from steps.weights.progress import TransferProgress
from steps.weights.sources import RemoteFile, Source, open_source

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FetchResult:
    """What a fetch did.

    Attributes:
        path: The cache entry's folder, ready to load.
        digest: The model's content digest (`sha256:<hex>`).
        cache_hit: True when nothing had to be downloaded.
        waited: True when another fetch of the same model held the lock first.
        files: Number of files in the model.
        total_bytes: Size of the model.
        downloaded_bytes: Bytes this run transferred.
        resumed_bytes: Bytes an earlier, interrupted run had already transferred.
        seconds: Wall time of the whole fetch.
    """

    path: Path
    digest: str
    cache_hit: bool
    waited: bool
    files: int
    total_bytes: int
    downloaded_bytes: int
    resumed_bytes: int
    seconds: float


def fetch_model(
    source: str,
    cache_root: str | Path,
    model: str,
    *,
    verify: Verify = "stat",
    concurrency: int = 16,
    chunk_size: int = 8 * MiB,
    progress: bool = True,
) -> FetchResult:
    """Make `source`'s files available, verified, under `cache_root/model/<digest>/`.

    Raises:
        SourceError: the source URI is bad, missing, empty, or refuses the credentials.
        TransferError: the download broke off; finished chunks are kept for the next run.
        IntegrityError: bytes did not match the source's size or checksum.
    """
    started = time.monotonic()
    src = open_source(source)
    files = src.list_files()
    for f in files:
        check_relative_path(source, f.path)
    digest = listing_digest(files)
    entry = CacheEntry(Path(cache_root), model, digest)
    total = sum(f.size for f in files)

    def result(hit: bool, waited: bool, downloaded: int = 0, resumed: int = 0) -> FetchResult:
        seconds = time.monotonic() - started
        return FetchResult(
            entry.path, digest, hit, waited, len(files), total, downloaded, resumed, seconds
        )

    with entry.locked(model) as waited:
        manifest = entry.read_manifest()
        intact: dict[str, CachedFile] = {}
        if manifest is not None:
            damaged = entry.damaged_files(manifest, verify)
            if not damaged:
                return result(True, waited)
            log.warning(
                "%s: %d cached file(s) damaged (%s); fetching them again",
                model,
                len(damaged),
                ", ".join(d.path for d in damaged[:5]),
            )
            entry.invalidate(damaged)
            intact = {f.path: f for f in manifest.files if f not in damaged}

        records = [intact[f.path] for f in files if f.path in intact]
        missing = src.with_checksums([f for f in files if f.path not in intact])
        plans = [plan_file(f, chunk_size) for f in missing]
        records += _reusable(entry, plans)
        done = {r.path for r in records}
        partials = [
            PartialFile(p, entry.path / p.file.path, entry.staging)
            for p in plans
            if p.file.path not in done
        ]
        _check_space(entry.path, source, sum(p.plan.file.size for p in partials))
        downloaded, resumed = _download(src, model, partials, records, concurrency, progress)
        entry.write_manifest(entry.new_manifest(source, records, src.resolved_revision()))
        shutil.rmtree(entry.staging, ignore_errors=True)
        return result(not partials, waited, downloaded, resumed)


def _download(
    src: Source,
    model: str,
    partials: list[PartialFile],
    records: list[CachedFile],
    concurrency: int,
    progress: bool,
) -> tuple[int, int]:
    """Run the downloader over the partial files; returns (bytes downloaded, bytes resumed)."""
    if not partials:
        return 0, 0
    lock = threading.Lock()

    def on_file_done(partial: PartialFile, checksum: str) -> None:
        f = partial.plan.file
        with lock:
            plan = partial.plan
            records.append(
                CachedFile(f.path, f.size, f.etag, checksum, plan.part_size, 0, plan.algorithm)
            )

    for partial in partials:
        partial.open()
    resumed = sum(p.resumed_bytes for p in partials)
    if resumed:
        log.info("%s: resuming, %.1f MB already on disk", model, resumed / 1e6)
    size = sum(p.plan.file.size for p in partials)
    try:
        with TransferProgress(f"fetch {model}", size, resumed, enabled=progress) as bar:
            Downloader(src, concurrency, bar.advance, on_file_done).run(partials)
    finally:
        for partial in partials:
            partial.close()
    return bar.completed - resumed, resumed


def _reusable(entry: CacheEntry, plans: list[FilePlan]) -> list[CachedFile]:
    """Files of an incomplete entry already under their final names, re-checked byte by byte.

    They were checked when renamed, but nothing vouches for them since; only files whose
    checksum the source can confirm are kept, the rest are fetched again.
    """
    kept = []
    for plan in plans:
        f: RemoteFile = plan.file
        path = entry.path / f.path
        if not plan.checked or not path.is_file() or path.stat().st_size != f.size:
            continue
        if file_checksum(path, plan.algorithm, plan.part_size) == plan.expected:
            kept.append(
                CachedFile(f.path, f.size, f.etag, plan.expected, plan.part_size, 0, plan.algorithm)
            )
    return kept


def check_relative_path(source: str, rel: str) -> None:
    """Refuse a listed path that would land outside the entry or on llmflow's own metadata."""
    parts = PurePosixPath(rel).parts
    if rel.startswith("/") or ".." in parts or (parts and parts[0] == ".llmflow"):
        raise SourceError(
            f"source {source!r} lists {rel!r}, which would land outside the model's cache "
            "folder; remove or rename that object"
        )


def _check_space(path: Path, source: str, needed: int) -> None:
    probe = path
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if needed > free:
        raise StepError(
            f"fetching {source!r} needs {needed / 1e9:.2f} GB but {probe} has "
            f"{free / 1e9:.2f} GB free; free space or point the cache elsewhere"
        )
