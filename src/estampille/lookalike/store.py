"""The reference corpus on disk: a catalog (SQLite: where each image came from, whose it is,
when it was captured, its rights note, its content hash) and immutable shards of packed hash
arrays (`.npy`, memory-mapped when searched).

    <index>/catalog.sqlite
    <index>/shards/<n>/{phash,dhash,colour,ids}.npy (N,)  windows.npy (W, N)  pdq.npy (4, N)
    <index>/shards/<n>/features.fbin, features_xy.npy, features_size.npy   the feature tier (feature_index.py)
    <index>/vocabulary.fbin   the words large shards' keypoint lists are filed on (vocabulary.py)
    <index>/lists/            those lists merged by word across shards, derived from them (merged_lists.py)

Arrays are column-major so a scan reads each hash kind contiguously. A shard is written to a
temporary folder and renamed into place before the catalog points at it, so a crash leaves
either a whole shard or none. A changed or re-added file gets a new row; its old row is marked
removed and filtered out of results (its hashes stay in their shard until the index is rebuilt).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import faiss
import numpy as np

from ..errors import EstampilleError, ExitStatus
from .feature_index import (
    FEATURE_FILES,
    FLAT_BELOW,
    STRIDE,
    THUMBNAILS,
    FeatureShard,
    descriptors_of,
    filed_on,
    index_of,
    write_feature_files,
)
from .features import feature_pipeline_id
from .hashing import WINDOWS, Hashes, pipeline_id
from .merged_lists import FOLDER as MERGED_FOLDER
from .merged_lists import MAX_ID, MergedLists, merge
from .vocabulary import Vocabulary, words_for

SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,            -- path or URL it came from
    competitor TEXT NOT NULL,        -- whose image it is ('own:<week>' for the brand's own renders)
    sha256 TEXT NOT NULL,
    size INTEGER, mtime_ns INTEGER,  -- to skip unchanged files without reading them
    captured TEXT, rights TEXT,
    pipeline TEXT NOT NULL,
    shard INTEGER NOT NULL, row INTEGER NOT NULL,
    removed INTEGER NOT NULL DEFAULT 0,
    added_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS images_source ON images(source, removed);
CREATE TABLE IF NOT EXISTS skipped (source TEXT PRIMARY KEY, reason TEXT NOT NULL, at TEXT NOT NULL,
                                    size INTEGER, mtime_ns INTEGER);
"""
KINDS_1D = ("phash", "dhash", "colour", "ids")
T = TypeVar("T")


class IndexUnusable(EstampilleError):
    """The index folder is unusable (other pipeline, damaged shard): the message says what to do."""

    exit_status = ExitStatus.USAGE


@dataclass
class Shard:
    number: int
    phash: np.ndarray
    dhash: np.ndarray
    colour: np.ndarray
    ids: np.ndarray
    windows: np.ndarray
    pdq: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class Entry:
    source: str
    competitor: str
    sha256: str
    size: int | None = None
    mtime_ns: int | None = None
    captured: str | None = None
    rights: str | None = None


class KnownFile(NamedTuple):
    id: int
    size: int | None
    mtime_ns: int | None
    sha256: str
    pipeline: str


class SkippedFile(NamedTuple):
    size: int | None
    mtime_ns: int | None
    reason: str


class ReferenceStore:
    """One index folder: add shards, mark rows removed, load shards memory-mapped."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        (self.folder / "shards").mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.folder / "catalog.sqlite", timeout=60, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(SCHEMA)
        self._features: dict[int, FeatureShard | None] = {}
        self._metas: dict[int, tuple[tuple[int, int, int], dict]] = {}
        self._vocabulary: Vocabulary | None = None
        self._merged: MergedLists | None = None
        self._shards: dict[int, Shard] = {}
        self._commits = 0  # this connection's own commits to `images` (PRAGMA data_version counts others')
        self._catalog_cache: dict[str, tuple[tuple[int, int], Any]] = {}
        self._clean_orphans()

    def close(self) -> None:
        self.db.close()
        if self._merged is not None:
            self._merged.close()
            self._merged = None

    # ---------------------------------------------------------------- catalog
    def known(self) -> dict[str, KnownFile]:
        """source -> its live row, to tell an unchanged file from a new or changed one."""
        rows = self.db.execute("SELECT source, id, size, mtime_ns, sha256, pipeline FROM images WHERE removed = 0")
        return {r[0]: KnownFile(*r[1:]) for r in rows}

    def skip(self, source: str, reason: str, size: int | None = None, mtime_ns: int | None = None) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO skipped VALUES (?, ?, ?, ?, ?)", (source, reason, _now(), size, mtime_ns)
        )

    def skipped(self) -> list[tuple[str, str]]:
        return list(self.db.execute("SELECT source, reason FROM skipped ORDER BY source"))

    def skipped_known(self) -> dict[str, SkippedFile]:
        """source -> why it was skipped: a bad file is not read again until it changes."""
        return {
            r[0]: SkippedFile(*r[1:]) for r in self.db.execute("SELECT source, size, mtime_ns, reason FROM skipped")
        }

    def _live_ids(self, sources: list[str]) -> list[int]:
        """Ids of the live rows for these sources (what a new shard replaces)."""
        ids: list[int] = []
        for start in range(0, len(sources), 900):
            chunk = sources[start : start + 900]
            ids += [
                r[0]
                for r in self.db.execute(
                    f"SELECT id FROM images WHERE removed = 0 AND source IN ({','.join('?' * len(chunk))})", chunk
                )
            ]
        return ids

    def describe(self, ids) -> dict[int, dict]:
        found = {}
        ids = [int(i) for i in ids]
        for start in range(0, len(ids), 900):
            chunk = ids[start : start + 900]
            rows = self.db.execute(
                f"SELECT id, source, competitor, sha256, captured, rights FROM images WHERE id IN "
                f"({','.join('?' * len(chunk))})",
                chunk,
            )
            for r in rows:
                found[r[0]] = {"source": r[1], "competitor": r[2], "sha256": r[3], "captured": r[4], "rights": r[5]}
        return found

    def removed_ids(self) -> np.ndarray:
        return self._per_catalog_state(
            "removed",
            lambda: np.fromiter((r[0] for r in self.db.execute("SELECT id FROM images WHERE removed = 1")), np.int64),
        )

    def _per_catalog_state(self, name: str, read: Callable[[], T]) -> T:
        """`read()`, again only when the catalog changed since (a commit here or by another process):
        a search at a million references otherwise spends a quarter of a second scanning the catalog
        for its shards and removed rows."""
        state = (self.db.execute("PRAGMA data_version").fetchone()[0], self._commits)
        cached = self._catalog_cache.get(name)
        if cached is None or cached[0] != state:
            cached = self._catalog_cache[name] = (state, read())
        return cached[1]

    def count(self) -> int:
        return self.db.execute("SELECT count(*) FROM images WHERE removed = 0").fetchone()[0]

    def version(self) -> str:
        """Changes whenever the live corpus changes (a check's idempotency key includes it)."""
        row = self.db.execute("SELECT count(*), coalesce(max(id), 0), coalesce(sum(removed), 0) FROM images").fetchone()
        return hashlib.sha256(json.dumps([row, pipeline_id()]).encode()).hexdigest()[:16]

    def rows_of(self, ids) -> dict[int, tuple[int, int]]:
        """id -> (shard, row)."""
        found: dict[int, tuple[int, int]] = {}
        ids = [int(i) for i in ids]
        for start in range(0, len(ids), 900):
            chunk = ids[start : start + 900]
            for r in self.db.execute(
                f"SELECT id, shard, row FROM images WHERE id IN ({','.join('?' * len(chunk))})", chunk
            ):
                found[r[0]] = (r[1], r[2])
        return found

    # ---------------------------------------------------------------- shards
    def add(self, entries: list[Entry], hashes: list[Hashes], features: list | None = None) -> int:
        """Write one shard holding `hashes` (and the feature tier's `features`, one per entry), then
        catalog `entries` pointing at it. Returns its number."""
        return self.add_arrays(
            entries,
            {
                "phash": np.array([h.phash for h in hashes], dtype=np.uint64),
                "dhash": np.array([h.dhash for h in hashes], dtype=np.uint64),
                "colour": np.array([h.colour for h in hashes], dtype=np.uint64),
                "windows": np.ascontiguousarray(
                    np.array([h.windows for h in hashes], dtype=np.uint64).reshape(len(hashes), len(WINDOWS)).T
                ),
                "pdq": np.ascontiguousarray(
                    np.array([h.pdq for h in hashes], dtype=np.uint64).reshape(len(hashes), 4).T
                ),
            },
            features,
        )

    def add_arrays(self, entries: list[Entry], arrays: dict[str, np.ndarray], features: list | None = None) -> int:
        """The same from packed arrays (phash, dhash, colour: (N,); windows (W, N); pdq (4, N))."""
        if not entries:
            return 0
        replaced = self._live_ids([e.source for e in entries])
        number = max([int(p.name) for p in (self.folder / "shards").iterdir() if p.name.isdigit()] + [0]) + 1
        first_id = self.db.execute("SELECT coalesce(max(id), 0) FROM images").fetchone()[0] + 1
        ids = np.arange(first_id, first_id + len(entries), dtype=np.int64)
        arrays = {**arrays, "ids": ids}
        tmp = self.folder / "shards" / f".tmp-{number}-{os.getpid()}"
        tmp.mkdir()
        for name, array in arrays.items():
            np.save(tmp / f"{name}.npy", array)
        meta = {"pipeline": pipeline_id(), "count": len(entries), "windows": WINDOWS}
        if features is not None:
            meta |= self._write_features(tmp, features)
        (tmp / "meta.json").write_text(json.dumps(meta))
        tmp.rename(self.folder / "shards" / f"{number:06d}")
        pipeline, now = pipeline_id(), _now()
        self.db.execute("BEGIN IMMEDIATE")
        self.db.executemany(
            "INSERT INTO images (id, source, competitor, sha256, size, mtime_ns, captured, rights, pipeline, shard, row,"
            " removed, added_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?)",
            [
                (
                    int(ids[n]),
                    e.source,
                    e.competitor,
                    e.sha256,
                    e.size,
                    e.mtime_ns,
                    e.captured,
                    e.rights,
                    pipeline,
                    number,
                    n,
                    now,
                )
                for n, e in enumerate(entries)
            ],
        )
        self.db.executemany("UPDATE images SET removed = 1 WHERE id = ?", [(i,) for i in replaced])
        self.db.executemany("DELETE FROM skipped WHERE source = ?", [(e.source,) for e in entries])
        self.db.execute("COMMIT")
        self._commits += 1
        return number

    def shard_numbers(self) -> list[int]:
        live = self._per_catalog_state(
            "shards", lambda: {r[0] for r in self.db.execute("SELECT DISTINCT shard FROM images")}
        )
        return sorted(n for n in live if (self.folder / "shards" / f"{n:06d}").is_dir())

    def load_shard(self, number: int) -> Shard:
        """A shard's hash arrays, memory-mapped (opened once: a shard's hashes never change)."""
        if number not in self._shards:
            self._shards[number] = self._open_shard(number)
        return self._shards[number]

    def _open_shard(self, number: int) -> Shard:
        folder = self.folder / "shards" / f"{number:06d}"
        meta = json.loads((folder / "meta.json").read_text())
        if meta["pipeline"] != pipeline_id():
            raise IndexUnusable(
                f"shard {folder} was hashed by another pipeline ({meta['pipeline']}); this "
                f"version hashes with {pipeline_id()}: rebuild the index (delete {self.folder} "
                "and run `estampille lookalike index` again)"
            )
        try:
            arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in (*KINDS_1D, "windows", "pdq")}
        except (OSError, ValueError) as exc:
            raise IndexUnusable(f"shard {folder} is damaged ({exc}): delete it and index again") from None
        return Shard(number, **arrays)

    # ---------------------------------------------------------------- vocabulary
    def vocabulary(self) -> Vocabulary | None:
        """The words large shards are filed on; None until the first large shard is written."""
        if self._vocabulary is None:
            self._vocabulary = Vocabulary.load(self.folder)
        return self._vocabulary

    def _write_features(self, folder: Path, features: list) -> dict:
        """Write a shard's feature files; the first large shard trains the index's vocabulary.
        Returns what its meta.json records of them."""
        vocabulary = self.vocabulary()
        if vocabulary is None and sum(min(len(f), STRIDE) for f in features) >= FLAT_BELOW:
            vocabulary = self._vocabulary = Vocabulary.train(np.concatenate([f.descriptors for f in features]))
            vocabulary.save(self.folder)
        digest = write_feature_files(folder, features, vocabulary)
        return {"features": feature_pipeline_id(), **({"vocabulary": digest} if digest else {})}

    def merged_lists(self) -> tuple[MergedLists, set[int]] | None:
        """The index's merged keypoint lists and the shards they still serve (merged_lists.py), or
        None when there are none on the current vocabulary."""
        vocabulary = self.vocabulary()
        if vocabulary is None:
            return None
        if self._merged is None:
            self._merged = MergedLists.load(self.folder)
        if self._merged is None:
            return None
        current = self._merged.current(self.folder, vocabulary.digest)
        return (self._merged, current) if current else None

    def merge_lists(self) -> int:
        """Merge the keypoint lists of every shard filed on the vocabulary by word (merged_lists.py),
        unless the merge already serves exactly them. Returns the keypoints merged (0: nothing to do).
        Reads every such shard's lists and writes them again: 266 s at a million references on 2 cores."""
        vocabulary = self.vocabulary()
        if vocabulary is None:
            return 0
        filed = [
            n
            for n in self.shard_numbers()
            if (meta := self._meta(n)).get("vocabulary") == vocabulary.digest
            and meta.get("features") == feature_pipeline_id()
            and meta["count"] * STRIDE < MAX_ID  # its ids fit the merge's (larger: its own lists)
        ]
        merged = self.merged_lists()
        if len(filed) < 2 or (merged is not None and merged[1] == set(filed) == set(merged[0].shards)):
            return 0
        if self._merged is not None:
            self._merged.close()
            self._merged = None
        return merge(self.folder, vocabulary.digest, len(vocabulary), filed)

    def vocabulary_outgrown(self) -> bool:
        """The index holds enough keypoints for a vocabulary four times larger than the one its first
        large shard trained (its lists are four times longer than they need be): `lookalike index
        --upgrade` trains one and files every shard on it."""
        vocabulary = self.vocabulary()
        if vocabulary is None:
            return False
        indexes = [self._keypoint_index(n) for n in self.shard_numbers()]
        return words_for(sum(i.ntotal for i in indexes if i is not None)) >= 4 * len(vocabulary)

    def shards_to_refile(self) -> list[int]:
        """Shards with features whose lists are not filed on the current vocabulary (an IVF of their
        own from before the shared vocabulary, or an older vocabulary)."""
        vocabulary = self.vocabulary()
        found = []
        for number in self.shard_numbers():
            meta = self._meta(number)
            index = self._keypoint_index(number)
            large = index is not None and index.ntotal >= FLAT_BELOW
            if large and (vocabulary is None or meta.get("vocabulary") != vocabulary.digest):
                found.append(number)
        return found

    def refile(self, numbers: list[int], retrain: bool = False) -> int:
        """File the keypoint lists of shards `numbers` on the index's vocabulary (training it first from
        their descriptors when there is none, or when `retrain`), from the descriptors their
        indexes hold: no image is decoded. Each shard's file is replaced whole, meta.json last.
        Returns the number of keypoints filed."""
        held = {n: descriptors_of(index) for n in numbers if (index := self._keypoint_index(n)) is not None}
        if not held:
            return 0
        if retrain or self.vocabulary() is None:
            self._vocabulary = Vocabulary.train(np.concatenate([codes for codes, _ in held.values()]))
            self._vocabulary.save(self.folder)
        vocabulary = self._vocabulary
        assert vocabulary is not None
        for number, (codes, ids) in held.items():
            folder = self.folder / "shards" / f"{number:06d}"
            index = index_of(codes, ids, vocabulary)
            tmp = folder / f".features-{os.getpid()}.fbin"
            faiss.write_index_binary(index, str(tmp))
            self._features.pop(number, None)
            os.replace(tmp, folder / FEATURE_FILES[0])
            meta = self._meta(number)
            meta.pop("vocabulary", None)
            if digest := filed_on(index, vocabulary):
                meta["vocabulary"] = digest
            self._write_meta(number, meta)
        return sum(len(ids) for _, ids in held.values())

    def _keypoint_index(self, number: int) -> faiss.IndexBinary | None:
        """A shard's keypoint index as it is on disk, whatever its meta.json says of it (what --upgrade
        files again, also after a crash between a shard's new file and its meta.json)."""
        folder = self.folder / "shards" / f"{number:06d}"
        if self._meta(number).get("features") != feature_pipeline_id() or not (folder / FEATURE_FILES[0]).is_file():
            return None
        return faiss.read_index_binary(str(folder / FEATURE_FILES[0]), faiss.IO_FLAG_MMAP)

    def _meta(self, number: int) -> dict:
        return json.loads((self.folder / "shards" / f"{number:06d}" / "meta.json").read_text())

    def _write_meta(self, number: int, meta: dict) -> None:
        folder = self.folder / "shards" / f"{number:06d}"
        (folder / "meta.json.tmp").write_text(json.dumps(meta))
        os.replace(folder / "meta.json.tmp", folder / "meta.json")

    def load_features(self, number: int) -> FeatureShard | None:
        """The shard's feature tier, or None when it predates it (or another feature pipeline made it)."""
        shard = self._feature_shard(number)
        vocabulary = self.vocabulary()
        if (
            shard is not None
            and shard.vocabulary is not None
            and (vocabulary is None or vocabulary.digest != shard.vocabulary)
        ):
            raise IndexUnusable(
                f"shard {number:06d} of {self.folder} is filed on vocabulary {shard.vocabulary}, which "
                f"{self.folder / 'vocabulary.fbin'} is not (missing, or trained again since): run "
                "`estampille lookalike index --upgrade` to file it again"
            )
        return shard

    def _current_meta(self, number: int) -> dict:
        """A shard's meta.json as it is now, read again only when the file was replaced (a search
        asks for every shard's several times a render: 40 shards at a million references). Not
        for changing: `_meta` gives a copy of its own."""
        path = self.folder / "shards" / f"{number:06d}" / "meta.json"
        info = path.stat()
        key = (info.st_ino, info.st_mtime_ns, info.st_size)
        held = self._metas.get(number)
        if held is None or held[0] != key:
            held = self._metas[number] = (key, json.loads(path.read_text()))
        return held[1]

    def _feature_shard(self, number: int) -> FeatureShard | None:
        folder = self.folder / "shards" / f"{number:06d}"
        meta = self._current_meta(number)
        if meta.get("features") != feature_pipeline_id():
            return None
        filed = meta.get("vocabulary")
        cached = self._features.get(number)
        if cached is None:
            try:
                cached = self._features[number] = FeatureShard.load(folder, filed)
            except (OSError, RuntimeError, ValueError) as exc:
                raise IndexUnusable(
                    f"the feature files of shard {folder} are damaged ({exc}): run "
                    "`estampille lookalike index --upgrade` to write them again"
                ) from None
        return cached

    def thumbnails(self, ids) -> dict[int, np.ndarray | None]:
        """id -> the reference's verification thumbnail: from its shard, else decoded from the catalog's
        file (a shard written before thumbnails were stored), else None (the file is gone)."""
        from .features import reference_thumbnail

        found: dict[int, np.ndarray | None] = {}
        missing: list[int] = []
        for reference, (number, row) in self.rows_of(ids).items():
            shard = self.load_features(number)
            if shard is not None and shard.thumbnails is not None:
                found[reference] = np.asarray(shard.thumbnails[row])
            else:
                missing.append(reference)
        # Only references of older shards cost a catalog look-up and a decode of their file.
        for reference, described in self.describe(missing).items():
            found[reference] = reference_thumbnail(described["source"])
        return found

    def shards_without_features(self) -> list[int]:
        return [
            n
            for n in self.shard_numbers()
            if json.loads((self.folder / "shards" / f"{n:06d}" / "meta.json").read_text()).get("features")
            != feature_pipeline_id()
        ]

    def sources_of_shard(self, number: int) -> list[tuple[int, str]]:
        """(row, source) of every row of a shard, removed ones included (rows keep their place)."""
        return list(self.db.execute("SELECT row, source FROM images WHERE shard = ? ORDER BY row", (number,)))

    def add_features(self, number: int, features: list) -> None:
        """Give an existing shard its feature tier (`lookalike index --upgrade`): files written aside,
        then renamed into place, meta.json last, so a crash leaves the shard as it was."""
        folder = self.folder / "shards" / f"{number:06d}"
        tmp = folder / f".features-{os.getpid()}"
        tmp.mkdir(exist_ok=True)
        written = self._write_features(tmp, features)
        for name in FEATURE_FILES + THUMBNAILS:
            if (tmp / name).is_file():
                os.replace(tmp / name, folder / name)
        tmp.rmdir()
        meta = self._meta(number)
        meta.pop("vocabulary", None)
        self._write_meta(number, meta | written)
        self._features.pop(number, None)

    def _clean_orphans(self) -> None:
        """A shard folder no catalog row points at is the leftover of a crash: remove it."""
        for path in (self.folder / "shards").iterdir():
            if path.name.startswith(".tmp-") and time.time() - path.stat().st_mtime > 3600:
                shutil.rmtree(path, ignore_errors=True)
        # And a merge of the keypoint lists cut short (merged_lists.py writes aside, then renames).
        for path in self.folder.glob(f".{MERGED_FOLDER}-*"):
            if time.time() - path.stat().st_mtime > 3600:
                shutil.rmtree(path, ignore_errors=True)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
