"""One hashing pipeline for competitor images and renders alike.

Decode: JPEGs are decoded at a reduced scale by libjpeg itself (PIL's `draft`, DCT scaling),
other formats are box-reduced, so the longest side lands in [DECODE_SIDE, 2*DECODE_SIDE). This is
most of the speed: libjpeg skips most of the inverse DCT of a 1024x768 JPEG (its entropy decoding,
~0.8 ms, remains), and every hash below only looks at 64x64 pixels or fewer anyway.

Hashes of the decoded image, each stored as unsigned integers:
- phash, dhash: bit-identical to `imagehash.phash` / `imagehash.dhash` of the same decoded image
  (tested), computed with one matrix product instead of two SciPy DCTs;
- colour: `imagehash.colorhash` (binbits=3, 42 bits): catches recolour-resistant near-copies'
  palette, reported as evidence;
- pdq: Meta's PDQ, 256 bits (the `pdqhash` package); a query also gets its 8 dihedral variants
  (mirrors, quarter turns), so a mirrored copy meets the original;
- windows: pHashes of sub-windows (WINDOWS, as fractions of the image), the crop-tolerant scheme:
  a crop of a competitor's image is close to one of that image's windows; a render with a border
  or padding has a window close to the competitor's whole image.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pdqhash
from PIL import Image

from ..images import UnreadableImage, open_image

__all__ = ["UnreadableImage", "decode", "hash_image", "hash_query", "pipeline_id"]

DECODE_SIDE = 64
PDQ_SIDE = 64
COLOUR_SIDE = 32
# (x0, y0, x1, y1) as fractions of the image. Chosen greedily on the labelled set for recall on crops,
# small rotations and borders at a low false-positive rate (bench/lookalike_quality.py); all keep
# at least 85% of each side, so a window stays close to its image's full pHash, which lets the scan
# skip windows for pairs whose full pHashes are far apart (see scan.py).
WINDOWS = (
    (0.075, 0.075, 0.925, 0.925),
    (0.11, 0.11, 0.89, 0.89),
    (0.04, 0.08, 0.96, 1.0),
    (0.04, 0.0, 0.96, 0.92),
    (0.08, 0.08, 1.0, 1.0),
    (0.0, 0.08, 0.92, 1.0),
    (0.08, 0.0, 1.0, 0.92),
    (0.0, 0.0, 0.92, 0.92),
)
COLOUR_BINBITS = 3
LANCZOS = Image.Resampling.LANCZOS  # what imagehash uses (its ANTIALIAS)


@lru_cache(maxsize=1)
def pipeline_id() -> str:
    """Everything that changes the bits: library versions, decode mode, windows."""
    parts = [
        f"pillow={version('pillow')}",
        f"imagehash={version('imagehash')}",
        f"pdqhash={version('pdqhash')}",
        f"numpy={np.__version__.split('.')[0]}",
        f"decode=draft-or-reduce-{DECODE_SIDE}",
        f"pdq-input={PDQ_SIDE}",
        f"colour-input={COLOUR_SIDE}",
        "windows=" + ";".join(",".join(f"{v:g}" for v in w) for w in WINDOWS),
        f"colour={COLOUR_BINBITS}",
    ]
    return "est1:" + "|".join(parts)


def decode(source: str | Path | bytes) -> Image.Image:
    """Open, refuse bombs, decode reduced (see module doc); RGB out."""

    def reduced(image: Image.Image) -> None:
        if image.format == "JPEG":  # libjpeg scales by 1/2, 1/4 or 1/8 while decoding
            scale = DECODE_SIDE / max(image.size)
            image.draft("RGB", (max(1, round(image.width * scale)), max(1, round(image.height * scale))))

    image = open_image(source, reduced)
    if image.mode != "RGB":
        image = to_rgb(image)
    return shrink(image, DECODE_SIDE)


def shrink(image: Image.Image, side: int) -> Image.Image:
    """Box-reduce by a whole factor so the longest side lands in [side, 2*side); as is when already there."""
    factor = max(image.size) // side
    return image.reduce(factor) if factor >= 2 else image


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB as the image displays: 16-bit stretched, transparency over white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit and float images: stretched to 8 bits (Pillow's convert clips them to white, which
        # hashed every such file as a blank frame). Only these files hash differently.
        values = np.asarray(image, dtype=np.float64)
        low, high = np.percentile(values, (0.5, 99.5)) if values.size else (0.0, 1.0)
        grey = np.clip((values - low) * 255 / max(high - low, 1e-9), 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, "white")  # transparent areas hash as white, as they display
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return image.convert("RGB")


@lru_cache(maxsize=4)
def _dct_rows(n: int = 32, keep: int = 8) -> np.ndarray:
    """The first `keep` rows of SciPy's unnormalised DCT-II matrix (fftpack.dct default)."""
    k = np.arange(keep)[:, None]
    x = np.arange(n)[None, :]
    return 2.0 * np.cos(np.pi * k * (2 * x + 1) / (2 * n))


def _pack(bits: np.ndarray) -> np.ndarray:
    """Rows of 64 booleans -> uint64, first bit most significant (imagehash's hex order)."""
    return np.packbits(bits.reshape(-1, 64), axis=1).view(">u8").astype(np.uint64).ravel()


def _phash_bits(pixels: np.ndarray) -> np.ndarray:
    """imagehash's pHash test on (k, 32, 32) pixel stacks: low 8x8 DCT coefficients above their median."""
    d = _dct_rows()
    low = np.matmul(np.matmul(d, pixels), d.T).reshape(len(pixels), 64)
    return _pack(low > np.median(low, axis=1, keepdims=True))


def phash_of(gray: Image.Image, box: tuple[float, float, float, float] | None = None) -> int:
    """imagehash.phash (hash_size 8, highfreq 4) of `gray`, or of a window of it."""
    return int(_phash_bits(np.asarray(gray.resize((32, 32), LANCZOS, box=box), dtype=np.float64)[None])[0])


def dhash_of(gray: Image.Image) -> int:
    pixels = np.asarray(gray.resize((9, 8), LANCZOS), dtype=np.int16)
    return int(_pack(pixels[:, 1:] > pixels[:, :-1])[0])


@lru_cache(maxsize=64)
def _box_matrix(size: int, start: float, stop: float, out: int = 32) -> np.ndarray:
    """Row i averages the input pixels covering output pixel i of the span [start, stop) (box filter)."""
    edges = np.linspace(start, stop, out + 1)
    lo, hi = edges[:-1, None], edges[1:, None]
    x = np.arange(size)[None, :]
    weights = np.clip(np.minimum(hi, x + 1) - np.maximum(lo, x), 0, None)
    return (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)


@lru_cache(maxsize=16)
def _window_matrices(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    rows = np.stack([_box_matrix(h, y0 * h, y1 * h) for _, y0, _, y1 in WINDOWS])
    cols = np.stack([_box_matrix(w, x0 * w, x1 * w).T for x0, _, x1, _ in WINDOWS])
    return rows, cols


def window_phashes(gray: Image.Image) -> tuple[int, ...]:
    """pHash of each window in WINDOWS, box-filtered by two batched matrix products
    (windows need not match imagehash, only each other: corpus and queries share this code)."""
    pixels = np.asarray(shrink(gray, 64), dtype=np.float32)
    rows, cols = _window_matrices(*pixels.shape)
    return tuple(int(v) for v in _phash_bits(np.matmul(np.matmul(rows, pixels), cols)))


def _colour_code(value: int) -> int:
    # imagehash's own bits for one value (not plain binary: its middle bit is "value >= 2")
    return sum(
        1 << (COLOUR_BINBITS - 1 - i)
        for i in range(COLOUR_BINBITS)
        if value // 2 ** (COLOUR_BINBITS - i - 1) % 2 ** (COLOUR_BINBITS - i) > 0
    )


_COLOUR_CODES = np.array([_colour_code(v) for v in range(2**COLOUR_BINBITS)], dtype=np.uint64)
_COLOUR_SHIFTS = np.arange(13, -1, -1, dtype=np.uint64) * COLOUR_BINBITS


def colour_of(image: Image.Image) -> int:
    """imagehash.colorhash (binbits 3) of a 32-pixel copy, the same arithmetic vectorised
    (a histogram of hues: size barely moves it). Bit-identical to imagehash on that copy (tested)."""
    small = shrink(image, COLOUR_SIDE)
    intensity = np.asarray(small.convert("L")).ravel()
    hsv = np.asarray(small.convert("HSV")).reshape(-1, 3)
    hue, sat = hsv[:, 0].astype(np.intp), hsv[:, 1]
    black = intensity < 32
    colours = ~black & (sat >= 85)
    hue_bin = np.minimum(5, (2 * hue) // 85)  # numpy.histogram over linspace(0, 255, 7)
    slot = np.where(colours & (sat < 170), hue_bin, np.where(colours & (sat > 170), hue_bin + 6, 12))
    counts = np.bincount(slot, minlength=13)[:12]
    top = 2**COLOUR_BINBITS
    fractions = np.concatenate(
        ([black.mean() * top, (~black & (sat < 85)).mean() * top], counts * top * 1.0 / max(1, int(colours.sum())))
    )
    values = np.minimum(top - 1, fractions.astype(np.int64))
    return int(np.bitwise_or.reduce(_COLOUR_CODES[values] << _COLOUR_SHIFTS))


def pdq_words(bits: np.ndarray) -> tuple[int, int, int, int]:
    """PDQ's 256 bits (pdqhash's order) as four uint64 words, most significant first."""
    packed = np.packbits(np.asarray(bits, dtype=bool)).view(">u8").astype(np.uint64)
    a, b, c, d = (int(w) for w in packed)
    return a, b, c, d


@dataclass(frozen=True)
class Hashes:
    phash: int
    dhash: int
    colour: int
    pdq: tuple[int, int, int, int]
    windows: tuple[int, ...]


def pdq_input(image: Image.Image) -> Image.Image:
    """PDQ reads a 64x64 luminance grid; feeding it ~PDQ_SIDE pixels instead of the decode size
    costs a third of the time."""
    return shrink(image, PDQ_SIDE)


def hash_image(image: Image.Image) -> Hashes:
    """All corpus hashes of a decoded RGB image."""
    gray = image.convert("L")
    bits, _quality = pdqhash.compute(np.asarray(pdq_input(image)))
    return Hashes(
        phash=phash_of(gray),
        dhash=dhash_of(gray),
        colour=colour_of(image),
        pdq=pdq_words(bits),
        windows=window_phashes(gray),
    )


# The eight ways a copy may be turned or flipped, identity and mirror first: a query is hashed under
# each, the same transform for its pHash and its PDQ, so the candidate rule can ask both to agree
# under one of them (the mirror always; the quarter turns when rotations are searched).
DIHEDRAL: tuple[Image.Transpose | None, ...] = (
    None,
    Image.Transpose.FLIP_LEFT_RIGHT,
    Image.Transpose.ROTATE_90,
    Image.Transpose.ROTATE_180,
    Image.Transpose.ROTATE_270,
    Image.Transpose.TRANSPOSE,
    Image.Transpose.TRANSVERSE,
    Image.Transpose.FLIP_TOP_BOTTOM,
)


@dataclass(frozen=True)
class QueryHashes:
    """A render's hashes, with the variants a copy may have taken: pHash and PDQ of the image under
    each of DIHEDRAL's transforms (index 0 is the image itself, 1 its mirror, 2-7 quarter turns and flips)."""

    hashes: Hashes
    variant_phash: tuple[int, ...]
    variant_pdq: tuple[tuple[int, int, int, int], ...]

    @property
    def mirror_phash(self) -> int:
        return self.variant_phash[1]


# Where each of DIHEDRAL's transforms is in pdqhash.compute_dihedral's answer, which computes all eight
# from one transform of the pixels (tested: each equals PDQ of the transformed image).
PDQ_DIHEDRAL_ORDER = (0, 5, 1, 2, 3, 6, 7, 4)


def hash_query(image: Image.Image) -> QueryHashes:
    hashes = hash_image(image)
    gray = image.convert("L")
    dihedral, _ = pdqhash.compute_dihedral(np.asarray(pdq_input(image)))
    phashes = [hashes.phash] + [phash_of(gray.transpose(t)) for t in DIHEDRAL[1:] if t is not None]
    return QueryHashes(hashes, tuple(phashes), tuple(pdq_words(dihedral[k]) for k in PDQ_DIHEDRAL_ORDER))


def hash_file(source: str | Path | bytes) -> Hashes:
    return hash_image(decode(source))
