"""Reference images (competitors', the brand's own past renders) and exact Hamming search.

Hashes are kept as packed uint64 arrays so one query is a vectorised XOR + popcount over the
whole index. The competitor index is cached on disk by file content hash: only new or
changed files are hashed again.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .fingerprint import HASH_KINDS, fingerprints, hex_to_int

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
# A render is a lookalike when any hash is this close (bits out of 64). imagehash's usual
# anchor; issue 8 replaces it with thresholds calibrated on a labelled set.
THRESHOLDS = {"phash": 10, "dhash": 10}
NEAR_MARGIN = 4
MAX_PIXELS = 50_000_000


@dataclass
class Reference:
    source: str        # competitor name or "own:<week>"
    reference: str     # file path or image id
    hashes: dict[str, str]


@dataclass
class HashIndex:
    references: list[Reference] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)   # (path, reason)
    _packed: tuple[int, dict[str, np.ndarray]] | None = None

    def arrays(self) -> dict[str, np.ndarray]:
        """The hashes packed as uint64 arrays, built once (again only if references were added)."""
        if self._packed is None or self._packed[0] != len(self.references):
            self._packed = (len(self.references), {
                kind: np.array([hex_to_int(r.hashes[kind]) for r in self.references], dtype=np.uint64)
                for kind in HASH_KINDS})
        return self._packed[1]

    @property
    def version(self) -> str:
        listing = json.dumps([[r.source, r.reference, r.hashes] for r in self.references], sort_keys=True)
        return hashlib.sha256(listing.encode()).hexdigest()[:16]

    def search(self, query: dict[str, str]) -> list[tuple[Reference, dict[str, int]]]:
        """References within threshold + margin on any hash, with every distance."""
        if not self.references:
            return []
        arrays = self.arrays()
        distances = {kind: _popcount(arrays[kind] ^ np.uint64(hex_to_int(query[kind]))) for kind in HASH_KINDS}
        close = np.zeros(len(self.references), dtype=bool)
        for kind in HASH_KINDS:
            close |= distances[kind] <= THRESHOLDS[kind] + NEAR_MARGIN
        return [(self.references[i], {k: int(distances[k][i]) for k in HASH_KINDS}) for i in np.flatnonzero(close)]


def _popcount(values: np.ndarray) -> np.ndarray:
    return np.bitwise_count(values).astype(np.int64)


def verdict_for(distances: dict[str, int]) -> str:
    return "lookalike" if any(distances[k] <= THRESHOLDS[k] for k in HASH_KINDS) else "near"


def open_checked(path: Path) -> Image.Image:
    """Open an image fully, refusing decompression bombs; raise ValueError with the reason."""
    if path.stat().st_size == 0:
        raise ValueError("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)
            if image.width * image.height > MAX_PIXELS:
                raise ValueError(f"declared size {image.width}x{image.height} is too large")
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ValueError("declared size is too large (decompression bomb)") from None
    except UnidentifiedImageError:
        raise ValueError("not a readable image (unknown format)") from None
    except OSError as exc:
        raise ValueError(f"corrupt or truncated image ({exc})") from None
    return image


def index_folders(folders: dict[str, Path], cache_file: Path) -> HashIndex:
    """Fingerprint every image under each competitor's folder, reusing cached hashes by content."""
    cache: dict[str, dict[str, str]] = {}
    if cache_file.is_file():
        try:
            cache = json.loads(cache_file.read_text())
        except json.JSONDecodeError:
            cache = {}
    index, fresh = HashIndex(), {}
    for source, folder in sorted(folders.items()):
        for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            hashes = cache.get(digest)
            if hashes is None:
                try:
                    hashes = fingerprints(open_checked(path))
                except ValueError as exc:
                    index.skipped.append((str(path), str(exc)))
                    continue
            fresh[digest] = hashes
            index.references.append(Reference(source=source, reference=str(path), hashes=hashes))
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(fresh, sort_keys=True))
    tmp.replace(cache_file)
    return index
