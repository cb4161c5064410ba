"""Hashing throughput per core on ~1024x768 JPEGs: the engine's whole pipeline (read, SHA-256,
reduced decode, pHash, dHash, colour hash, PDQ, 8 window pHashes) against `imagehash.phash` alone
(full decode), in one process each, on the same files; then a full `ingest` with 2 processes.

    .venv/bin/python bench/lookalike_ingest.py [--files 300] [--repeat 3]

The files are cut from the photos the project ships, resized to 1024x768 with a little grain
(as camera photos have) and saved at JPEG quality 85.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def make_files(folder: Path, count: int) -> list[Path]:
    from PIL import Image

    from estampille.testing.benchset import shipped_photos

    rng = np.random.default_rng(0)
    photos = [p for _, p in shipped_photos(REPO)]
    files = []
    for n in range(count):
        photo = photos[n % len(photos)]
        scale = rng.uniform(0.6, 1.0)
        w, h = int(photo.width * scale), int(photo.height * scale)
        x, y = int(rng.integers(0, photo.width - w + 1)), int(rng.integers(0, photo.height - h + 1))
        pixels = np.asarray(photo.crop((x, y, x + w, y + h)).resize((1024, 768)), dtype=np.float32)
        grain = rng.normal(0, 3.0, pixels.shape)
        path = folder / f"photo-{n:04d}.jpg"
        Image.fromarray(np.clip(pixels + grain, 0, 255).astype(np.uint8)).save(path, "JPEG", quality=85)
        files.append(path)
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    import imagehash
    from PIL import Image

    from estampille.lookalike.hashing import hash_file
    from estampille.lookalike.ingest import ingest
    from estampille.lookalike.store import ReferenceStore

    with tempfile.TemporaryDirectory() as tmp:
        files = make_files(Path(tmp), args.files)
        size = sum(p.stat().st_size for p in files) / len(files) / 1024

        def baseline() -> float:
            started = time.perf_counter()
            for path in files:
                imagehash.phash(Image.open(path))
            return len(files) / (time.perf_counter() - started)

        def ours() -> float:
            started = time.perf_counter()
            for path in files:
                data = path.read_bytes()
                hashlib.sha256(data).hexdigest()
                hash_file(data)
            return len(files) / (time.perf_counter() - started)

        hash_file(files[0].read_bytes())
        rows = []
        # Alternate so that a busy moment of the machine does not fall on one side only.
        base_runs, our_runs = [], []
        for _ in range(args.repeat):
            base_runs.append(baseline())
            our_runs.append(ours())
        base, mine = statistics.median(base_runs), statistics.median(our_runs)
        rows.append(("imagehash.phash, full decode (baseline)", base, 1.0))
        rows.append(("estampille, all hashes + SHA-256", mine, mine / base))
        store = ReferenceStore(Path(tmp) / "index")
        started = time.perf_counter()
        report = ingest(store, files, "bench", workers=2)
        wall = len(files) / (time.perf_counter() - started)
        rows.append(("estampille ingest, 2 processes (wall, incl. catalog)", wall, wall / base))
        store.close()
        assert report.added == len(files)
    print(f"{len(files)} JPEGs 1024x768, {size:.0f} KB each on average; median of {args.repeat} alternated runs\n")
    print(f"{'what':52} {'images/s':>9} {'x baseline':>11}")
    for name, rate, ratio in rows:
        print(f"{name:52} {rate:9.0f} {ratio:11.2f}")


if __name__ == "__main__":
    main()
