"""Find the picture inside a query before hashing it: a competitor's visual reposted as a phone
screenshot (status bar, header, caption and icons around it) or as a 9:16 story (fitted over a
blurred, enlarged copy of itself) hashes nothing like the original as a whole frame. Its content
region does, so the fast tier hashes that region too and catches these copies where it can; the
feature tier (features.py) catches the rest.

Two cues, on a 256-pixel grey copy: uniform bands at the edges (borders, letterboxing, flat UI
bars) are trimmed; then the longest run of rows, and of columns, with real detail (Laplacian
energy) is the picture: text lines are short runs separated by blank gaps, a blurred background
has little energy. A collage (pictures side by side with uniform gutters between them, as
collage apps lay them out) is split along its gutters, and each tile is a region too.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

WORK_SIDE = 256
MIN_SHARE, MAX_SHARE = 0.15, 0.92  # of the query's area: smaller is a detail, larger is the whole
MIN_TILE = 0.2  # of a side: a collage's tile is at least this long
MAX_TILES = 9
GUTTER_SIDE = 1024
MIN_TILE_SHARE = 0.08  # of the query's area: a tile of a 3 x 3 grid


def _uniform_trim(gray: np.ndarray) -> tuple[int, int, int, int]:
    """The box left once uniform bands are removed from each edge."""
    h, w = gray.shape
    top, bottom, left, right = 0, h, 0, w

    def flat(band: np.ndarray) -> bool:
        return band.std() < 6

    while bottom - top > h // 4 and flat(gray[top, left:right]):
        top += 1
    while bottom - top > h // 4 and flat(gray[bottom - 1, left:right]):
        bottom -= 1
    while right - left > w // 4 and flat(gray[top:bottom, left]):
        left += 1
    while right - left > w // 4 and flat(gray[top:bottom, right - 1]):
        right -= 1
    return left, top, right, bottom


def _longest_run(active: np.ndarray, gap: int) -> tuple[int, int]:
    """[start, stop) of the longest run of True, bridging gaps of up to `gap` False values."""
    best: tuple[int, int] = (0, 0)
    start: int | None = None
    last: int | None = None
    for i, on in enumerate(active):
        if on:
            if start is None or last is None or i - last > gap + 1:
                start = i
            last = i
            if last + 1 - start > best[1] - best[0]:
                best = (start, last + 1)
    return best


def _sharp_box(gray: np.ndarray) -> tuple[int, int, int, int]:
    energy = np.abs(cv2.Laplacian(gray.astype(np.float32), cv2.CV_32F, ksize=3))
    rows = energy.mean(axis=1)
    threshold = 0.3 * np.percentile(rows, 90)
    top, bottom = _longest_run(rows > threshold, gap=max(1, len(rows) // 60))
    if bottom - top < 8:
        return 0, 0, gray.shape[1], gray.shape[0]
    cols = energy[top:bottom].mean(axis=0)
    left, right = _longest_run(cols > 0.3 * np.percentile(cols, 90), gap=max(1, len(cols) // 60))
    return left, top, right, bottom


def _segments(flat: np.ndarray, min_length: int) -> list[tuple[int, int]]:
    """[start, stop) runs between uniform lines (gutters), each at least `min_length` long."""
    runs, start = [], None
    for i, is_flat in enumerate(flat):
        if not is_flat and start is None:
            start = i
        elif is_flat and start is not None:
            runs.append((start, i))
            start = None
    if start is not None:
        runs.append((start, len(flat)))
    return [r for r in runs if r[1] - r[0] >= min_length]


def _gutter_tiles(gray: np.ndarray) -> list[tuple[int, int, int, int]]:
    """The tiles of a collage laid out with uniform gutters; [] when there are none. A gutter is a
    row (or column) that is uniform across the whole box, between two runs of picture."""
    h, w = gray.shape
    g = gray.astype(np.float32)
    rows = _segments(g.std(axis=1) < 6, max(8, int(MIN_TILE * h)))
    cols = _segments(g.std(axis=0) < 6, max(8, int(MIN_TILE * w)))
    if (len(rows) < 2 and len(cols) < 2) or len(rows) * len(cols) > MAX_TILES:
        return []
    # Each row band may be split on its own (a 1 + 2 layout): look for gutters within it.
    tiles = []
    for top, bottom in rows:
        band = g[top:bottom]
        for left, right in _segments(band.std(axis=0) < 6, max(8, int(MIN_TILE * w))):
            tiles.append((left, top, right, bottom))
    return tiles if 2 <= len(tiles) <= MAX_TILES else []


def _gray(image: Image.Image, side: int) -> np.ndarray:
    gray = image.convert("L")
    scale = side / max(gray.size)
    if scale < 1:
        gray = gray.resize((max(1, round(gray.width * scale)), max(1, round(gray.height * scale))))
    return np.asarray(gray)


def content_regions(image: Image.Image) -> list[tuple[float, float, float, float]]:
    """Boxes (x0, y0, x1, y1 as fractions of the query) that may be the picture a query shows,
    besides the whole frame: the frame trimmed, its sharp part, and the tiles of a collage;
    none when the whole frame is the picture."""
    gray = _gray(image, WORK_SIDE)
    h, w = gray.shape
    if min(h, w) < 16:
        return []
    x0, y0, x1, y1 = _uniform_trim(gray)
    sx0, sy0, sx1, sy1 = _sharp_box(gray[y0:y1, x0:x1])
    boxes = [((x0, y0, x1, y1), MIN_SHARE), ((x0 + sx0, y0 + sy0, x0 + sx1, y0 + sy1), MIN_SHARE)]
    # Gutters are a few pixels wide: look for them at the query's own resolution (up to GUTTER_SIDE).
    fine = _gray(image, GUTTER_SIDE)
    fy, fx = fine.shape[0] / h, fine.shape[1] / w
    ox, oy = round(x0 * fx), round(y0 * fy)
    boxes += [
        (((ox + a) / fx, (oy + b) / fy, (ox + c) / fx, (oy + d) / fy), MIN_TILE_SHARE)
        for a, b, c, d in _gutter_tiles(fine[oy : round(y1 * fy), ox : round(x1 * fx)])
    ]
    found: list[tuple[float, float, float, float]] = []
    for (bx0, by0, bx1, by1), min_share in boxes:
        share = (bx1 - bx0) * (by1 - by0) / (w * h)
        box = (bx0 / w, by0 / h, bx1 / w, by1 / h)
        if (
            min_share <= share <= MAX_SHARE
            and (bx1 - bx0) >= 16
            and (by1 - by0) >= 16
            and all(max(abs(a - b) for a, b in zip(box, other, strict=True)) > 0.03 for other in found)
        ):
            found.append(box)
    return found
