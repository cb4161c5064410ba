"""Find the picture inside a query before hashing it: a competitor's visual reposted as a phone
screenshot (status bar, header, caption and icons around it) or as a 9:16 story (fitted over a
blurred, enlarged copy of itself) hashes nothing like the original as a whole frame. Its content
region does, so the fast tier hashes that region too and catches these copies where it can; the
feature tier (features.py) catches the rest.

Two cues, on a 256-pixel grey copy: uniform bands at the edges (borders, letterboxing, flat UI
bars) are trimmed; then the longest run of rows, and of columns, with real detail (Laplacian
energy) is the picture: text lines are short runs separated by blank gaps, a blurred background
has little energy.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

WORK_SIDE = 256
MIN_SHARE, MAX_SHARE = 0.15, 0.92     # of the query's area: smaller is a detail, larger is the whole


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
    best, start, last = (0, 0), None, None
    for i, on in enumerate(active):
        if on:
            if start is None or i - last > gap + 1:
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


def content_regions(image: Image.Image) -> list[tuple[float, float, float, float]]:
    """Boxes (x0, y0, x1, y1 as fractions of the query) that may be the picture a query shows,
    besides the whole frame; at most two, none when the whole frame is the picture."""
    gray_image = image.convert("L")
    scale = WORK_SIDE / max(gray_image.size)
    if scale < 1:
        gray_image = gray_image.resize((max(1, round(gray_image.width * scale)), max(1, round(gray_image.height * scale))))
    gray = np.asarray(gray_image)
    h, w = gray.shape
    if min(h, w) < 16:
        return []
    boxes = []
    x0, y0, x1, y1 = _uniform_trim(gray)
    boxes.append((x0, y0, x1, y1))
    sx0, sy0, sx1, sy1 = _sharp_box(gray[y0:y1, x0:x1])
    boxes.append((x0 + sx0, y0 + sy0, x0 + sx1, y0 + sy1))
    found: list[tuple[float, float, float, float]] = []
    for bx0, by0, bx1, by1 in boxes:
        share = (bx1 - bx0) * (by1 - by0) / (w * h)
        box = (bx0 / w, by0 / h, bx1 / w, by1 / h)
        if MIN_SHARE <= share <= MAX_SHARE and (bx1 - bx0) >= 16 and (by1 - by0) >= 16 and all(
                max(abs(a - b) for a, b in zip(box, other)) > 0.03 for other in found):
            found.append(box)
    return found
