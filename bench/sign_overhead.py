"""Provenance cost per image: XMP + C2PA signing against a plain PNG encode, in one run.

    .venv/bin/python bench/sign_overhead.py [--images 10] [--size 1024]

Baseline: Pillow's PNG encode of the render (done anyway to store it). Measured: the same encode
with the XMP packet, the C2PA signature of those bytes (no thumbnail, ES256, dev CA), and the
read-back validation the stage does after signing.
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from estampille.provenance.c2pa_manifest import ManifestSigner, generation_manifest, read_manifest
from estampille.provenance.identity import dev_identity
from estampille.provenance.xmp import TRAINED, XmpFields, png_with_xmp, xmp_packet

FIELDS = XmpFields(
    TRAINED,
    "builtin:tiny-sd",
    "sha256:0123",
    "a loaf on a table",
    "Maison Levain",
    "Maison Levain (AI)",
    "© 2026",
    "https://example.test/r",
    "Maison Levain SAS",
    "https://example.test/c",
    "prohibited",
)


def timed(fn, *args):
    started = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=10)
    parser.add_argument("--size", type=int, default=1024)
    args = parser.parse_args()
    identity = dev_identity(Path(tempfile.mkdtemp()) / "signer")
    signer = ManifestSigner(identity)
    rng = np.random.default_rng(0)
    # Gradients with grain: PNGs of about the size of a real 1024x1024 render (1.5-3 MB).
    base = np.linspace(0, 255, args.size, dtype=np.float32)
    rows = []
    for i in range(args.images + 1):
        tint = rng.uniform(0.5, 1.0, 3)
        grain = rng.normal(0, 6, (args.size, args.size, 3))
        pixels = np.clip(np.outer(base, base)[..., None] / 255 * tint + grain, 0, 255).astype(np.uint8)
        image = Image.fromarray(pixels, "RGB")
        _, plain = timed(image.save, io.BytesIO(), "PNG")
        with_xmp, encode = timed(png_with_xmp, image, xmp_packet(FIELDS))
        manifest = generation_manifest(
            f"{i}.png", TRAINED, {"name": "bench", "version": "0"}, {"seed": i}, "prohibited"
        )
        signed, sign = timed(signer.sign, with_xmp, "image/png", manifest)
        report, read = timed(read_manifest, signed, "image/png", identity.trust_anchor_pem)
        assert report.state == "Trusted", report
        if i:  # first image warms up
            rows.append((plain, encode, sign, read, len(signed) - len(with_xmp), len(signed)))
    signer.close()
    med = lambda k: statistics.median(r[k] for r in rows)  # noqa: E731
    plain = med(0)
    print(f"{args.images} images {args.size}x{args.size}, thumbnail off, ES256, medians")
    print(f"{'measure':44s} {'ms':>8s} {'ratio':>7s}")
    print(f"{'PNG encode, no metadata (baseline)':44s} {plain * 1e3:8.2f} {1:7.2f}")
    print(f"{'PNG encode with XMP':44s} {med(1) * 1e3:8.2f} {med(1) / plain:7.2f}")
    print(f"{'XMP cost (encode with XMP - baseline)':44s} {(med(1) - plain) * 1e3:8.2f}")
    print(f"{'C2PA sign':44s} {med(2) * 1e3:8.2f} {med(2) / plain:7.2f}")
    print(f"{'XMP + sign (the provenance cost)':44s} {(med(1) - plain + med(2)) * 1e3:8.2f}")
    print(f"{'read back + validate (Trusted)':44s} {med(3) * 1e3:8.2f} {med(3) / plain:7.2f}")
    print(f"{'manifest size (bytes)':44s} {med(4):8.0f}")
    print(f"{'signed PNG size (MB)':44s} {med(5) / 1e6:8.2f}")


if __name__ == "__main__":
    main()
