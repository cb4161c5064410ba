"""Auditing a folder of our own signed 1024x1024 PNGs (each recorded in a ledger, as a batch
records them), through the command a designer runs: `estampille audit DIR --json` and with
`--report audit.html` (thumbnails). Target: 1,000 files in 30 s on 2 cores.

    .venv/bin/python bench/audit_folder.py --files 1000
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from estampille.ledger import Ledger
from estampille.lookalike.fingerprint import fingerprints
from estampille.provenance.c2pa_manifest import ManifestSigner, generation_manifest
from estampille.provenance.identity import dev_identity
from estampille.provenance.xmp import TRAINED, XmpFields, png_with_xmp, xmp_packet

BIN = Path(sys.executable).parent


def make_files(folder: Path, home: Path, ledger_url: str, count: int, size: int) -> None:
    """`count` distinct smooth pictures (a render's size on disk, not noise), signed and recorded."""
    identity = dev_identity(home / "signer")
    signer = ManifestSigner(identity)
    ledger = Ledger(ledger_url)
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size] / size
    for i in range(count):
        a, b, c = rng.uniform(2, 12, 3)
        rgb = np.stack([np.sin(a * x + i), np.cos(b * y - i), np.sin(c * (x + y))], axis=-1)
        pixels = ((rgb + 1) * 127.5 + rng.normal(0, 2, rgb.shape)).clip(0, 255).astype(np.uint8)
        image = Image.fromarray(pixels)
        image_id = f"img-bench-{i:05d}"
        fields = XmpFields(
            TRAINED,
            "bench model",
            "weights sha256:0",
            None,
            "Bench",
            "Bench",
            "(c)",
            "https://x",
            "Bench",
            "https://x",
            "prohibited",
            f"xmp:iid:{i}",
            f"xmp.did:{i}",
        )
        data = signer.sign(
            png_with_xmp(image, xmp_packet(fields)),
            "image/png",  # Pillow's default zlib level
            generation_manifest(
                f"{image_id}.png",
                TRAINED,
                {"name": "bench", "version": "0"},
                {"image_id": image_id, "model": "bench"},
                "prohibited",
                f"xmp:iid:{i}",
            ),
            [],
        )
        (folder / f"{image_id}.png").write_bytes(data)
        model = {
            "id": "bench",
            "name": "bench model",
            "revision": None,
            "weights_sha256": "0",
            "pipeline_class": "Bench",
            "licence": "Apache-2.0",
            "commercial_use": "yes",
            "test_model": True,
        }
        ledger.append(
            "render.created",
            image_id,
            {"image_id": image_id, "sha256": "raw", "model": model, "fingerprints": fingerprints(image)},
            brand="bench",
            week="2026-W50",
        )
        ledger.append(
            "provenance.signed",
            f"sign-{image_id}",
            {"image_id": image_id, "sha256": hashlib.sha256(data).hexdigest(), "signer": identity.subject},
            brand="bench",
            week="2026-W50",
        )
    ledger.close()
    signer.close()


def timed(command: list[str], env: dict) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode not in (0, 1):
        raise SystemExit(done.stderr[-2000:])
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--size", type=int, default=1024)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder, home = root / "images", root / "home"
        folder.mkdir()
        ledger_url = f"sqlite:///{root / 'ledger.sqlite'}"
        started = time.perf_counter()
        make_files(folder, home, ledger_url, args.files, args.size)
        made = time.perf_counter() - started
        megabytes = sum(p.stat().st_size for p in folder.iterdir()) / 2**20
        env = {**os.environ, "ESTAMPILLE_HOME": str(home), "ESTAMPILLE_LEDGER_URL": ledger_url}
        rows = [
            ("audit DIR --json", timed([str(BIN / "estampille"), "audit", str(folder), "--json"], env)),
            (
                "audit DIR --report audit.html",
                timed([str(BIN / "estampille"), "audit", str(folder), "--report", str(root / "audit.html")], env),
            ),
        ]
    print(
        f"\n{args.files} signed {args.size}x{args.size} PNGs ({megabytes:.0f} MB; made in {made:.0f} s), "
        f"{os.cpu_count()} cores, target 30 s per 1,000 files"
    )
    print(f"{'command':<32} {'seconds':>8} {'ms/file':>8} {'s per 1,000':>12}")
    for name, seconds in rows:
        print(f"{name:<32} {seconds:>8.1f} {1000 * seconds / args.files:>8.1f} {1000 * seconds / args.files:>12.1f}")


if __name__ == "__main__":
    main()
