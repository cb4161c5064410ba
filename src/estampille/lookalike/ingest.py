"""Adding images to a reference index: only new or changed files are hashed, in parallel over
processes; a file that cannot be hashed is skipped with its reason and the run goes on."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..images import image_files
from .features import Features, reference_features
from .hashing import Hashes, UnreadableImage, hash_file, pipeline_id
from .store import Entry, ReferenceStore

CHUNK = 64  # files per task sent to a worker process
SHARD_SIZE = 50_000  # images per shard: a crash loses at most this much hashing (~1 min)


@dataclass
class IngestReport:
    added: int = 0
    unchanged: int = 0
    replaced: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (source, reason)
    merge_error: str | None = None  # why the keypoint lists were not merged (the images were added)


def _hash_one(path: str) -> tuple[str, str, int, int, tuple[Hashes, Features] | None, str | None]:
    """(path, sha256, size, mtime_ns, (hashes, features), error): runs in a worker process."""
    try:
        stat = os.stat(path)
        data = Path(path).read_bytes()
    except OSError as exc:
        return path, "", 0, 0, None, f"cannot read ({exc.strerror or exc})"
    digest = hashlib.sha256(data).hexdigest()
    try:
        return path, digest, stat.st_size, stat.st_mtime_ns, (hash_file(data), reference_features(data)), None
    except UnreadableImage as exc:
        return path, digest, stat.st_size, stat.st_mtime_ns, None, str(exc)


def _hash_chunk(paths: list[str]) -> list[tuple]:
    return [_hash_one(p) for p in paths]


def ingest(
    store: ReferenceStore,
    inputs: Iterable[str | Path],
    competitor: str,
    *,
    captured: str | None = None,
    rights: str | None = None,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    merge: bool = True,
) -> IngestReport:
    """Hash what is new or changed under `inputs` and add it as `competitor`'s images (the stored
    source is the file's absolute path). Shards are written as hashing goes, so a crashed run
    loses at most one shard's worth of work. Then the keypoint lists are merged across shards
    (merged_lists.py) unless `merge` is False (a caller adding several folders merges once)."""
    report = IngestReport()
    known = store.known()
    bad = store.skipped_known()
    pipeline = pipeline_id()
    todo: list[str] = []
    sources: dict[str, str] = {}
    for path in image_files(inputs):
        source = str(path.absolute())
        sources[str(path)] = source
        row = known.get(source)
        try:
            stat = path.stat()
        except OSError as exc:
            report.skipped.append((source, f"cannot read ({exc.strerror or exc})"))
            store.skip(source, report.skipped[-1][1])
            continue
        if row and row.size == stat.st_size and row.mtime_ns == stat.st_mtime_ns and row.pipeline == pipeline:
            report.unchanged += 1
            continue
        if source in bad and (bad[source].size, bad[source].mtime_ns) == (stat.st_size, stat.st_mtime_ns):
            report.skipped.append((source, bad[source].reason))  # still the same bad file: not read again
            continue
        todo.append(str(path))
    done = 0
    entries: list[Entry] = []
    hashes: list[Hashes] = []
    features: list[Features] = []

    def flush() -> None:
        nonlocal entries, hashes, features
        report.replaced += sum(1 for e in entries if e.source in known)
        store.add(entries, hashes, features)
        report.added += len(entries)
        entries, hashes, features = [], [], []

    def take(chunk: list[tuple]) -> None:
        nonlocal done
        for path, digest, size, mtime_ns, found, error in chunk:
            source = sources[path]
            if error:
                report.skipped.append((source, error))
                store.skip(source, error, size, mtime_ns)
            else:
                entries.append(Entry(source, competitor, digest, size, mtime_ns, captured, rights))
                hashes.append(found[0])
                features.append(found[1])
                if len(entries) >= SHARD_SIZE:
                    flush()
            done += 1
            if progress:
                progress(done, len(todo))

    chunks = [todo[i : i + CHUNK] for i in range(0, len(todo), CHUNK)]
    workers = min(workers or os.cpu_count() or 1, len(chunks))
    if workers <= 1:
        for chunk in chunks:
            take(_hash_chunk(chunk))
    else:
        with ProcessPoolExecutor(workers) as pool:
            for hashed in pool.map(_hash_chunk, chunks):
                take(hashed)
    flush()
    if merge and report.added:
        report.merge_error = merge_lists(store)
    return report


def merge_lists(store: ReferenceStore) -> str | None:
    """Merge the index's keypoint lists across shards (merged_lists.py). None when done, else why not:
    a merge that fails (a full disk) loses nothing, every shard is still searched through its own lists."""
    try:
        store.merge_lists()
    except OSError as exc:
        return (
            f"keypoint lists not merged ({exc.strerror or exc}): searches scan each shard's own lists, "
            "more slowly, until the next `estampille lookalike index` merges them"
        )
    return None


def _features_of(source: str) -> Features:
    """A reference's features for --upgrade; a file gone or unreadable since gets none (its row
    is still searched by the hash tier, which needs no file)."""
    try:
        return reference_features(Path(source).read_bytes())
    except (OSError, UnreadableImage):
        from PIL import Image

        from .features import extract

        return extract(Image.new("L", (1, 1)), 0)


def upgrade(
    store: ReferenceStore, workers: int | None = None, progress: Callable[[int, int], None] | None = None
) -> int:
    """Add the feature tier to shards indexed before it, from the catalog's files, without touching
    their hashes. Returns the number of images given features."""
    shards = store.shards_without_features()
    rows = {n: store.sources_of_shard(n) for n in shards}
    total, done = sum(len(r) for r in rows.values()), 0
    workers = workers or os.cpu_count() or 1
    with ProcessPoolExecutor(workers) as pool:
        for number in shards:
            sources = [source for _, source in rows[number]]
            found = []
            for start in range(0, len(sources), CHUNK * workers):
                found += list(pool.map(_features_of, sources[start : start + CHUNK * workers], chunksize=CHUNK))
                done += min(CHUNK * workers, len(sources) - start)
                if progress:
                    progress(done, total)
            store.add_features(number, found)
    return total


def refile(store: ReferenceStore) -> int:
    """File every large shard's keypoint lists on the index's shared vocabulary: shards from before it
    (an IVF of their own), and all of them when the index has outgrown its vocabulary (its first
    large shard trained fewer words than its size now warrants), then merge the lists across shards.
    Reads no image. Returns keypoints filed."""
    if store.vocabulary_outgrown():
        filed = store.refile([n for n in store.shard_numbers()], retrain=True)
    else:
        filed = store.refile(store.shards_to_refile())
    store.merge_lists()  # --upgrade: a failure here is the command's error
    return filed
