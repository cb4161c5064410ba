"""The second tier: a part of one picture inside another. Global hashes of the whole frame
cannot see a competitor's picture cropped to a square, framed by a phone's UI, laid over a blurred
copy of itself as a story, or mirrored and recoloured; local features can.

Each image gets ORB keypoints (OpenCV): binary 256-bit descriptors, compact enough for a large
index (256 per reference image, ~12 KB with their positions) and searchable by Hamming distance
in faiss's binary indexes. A candidate reference must then pass geometric verification: RANSAC fits
a similarity (scale, rotation, translation) from the reference's keypoints to the query's, and the
match needs enough inliers spread over enough of the reference. Mirrors are searched as a second
query (ORB is not mirror-invariant). Why ORB over SIFT/AKAZE: bench/lookalike_features.py.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from .hashing import DECODE_SIDE, decode, shrink, to_rgb
from .verify import thumbnail

EXTRACT_SIDE = 512  # longest side reference features are extracted at
QUERY_SIDE = 768  # queries larger: a picture that is a quarter of a collage keeps its detail
REFERENCE_KEYPOINTS = 256  # per reference image: what the index stores (~12 KB with positions)
QUERY_KEYPOINTS = (
    800  # per query: more than a reference, so a crop still shares enough (bench/lookalike_features_speed.py)
)
GRID = 4  # references keep their best keypoints per cell of a GRID x GRID grid
DESCRIPTOR_BYTES = 32

cv2.setNumThreads(1)  # ingest and search parallelise over processes, not inside OpenCV


@dataclass
class Features:
    xy: np.ndarray  # (K, 2) float32, pixels of the extraction image
    descriptors: np.ndarray  # (K, 32) uint8
    size: tuple[int, int]  # (width, height) of the extraction image
    thumbnail: np.ndarray | None = None  # references: the grey THUMB x THUMB picture verification compares

    def __len__(self) -> int:
        return len(self.xy)


@dataclass(frozen=True)
class FeatureMatch:
    inliers: int
    scale: float  # query size / reference size of the matched part
    rotation: float  # degrees
    mirrored: bool
    reference_box: tuple[float, float, float, float]  # x0, y0, x1, y1 in [0, 1] of the reference
    query_box: tuple[float, float, float, float]  # the same part in the query
    coverage: float  # share of the reference's area the inliers span
    pairs: list[tuple[float, float, float, float]]  # inlier pairs (reference x, y, query x, y) in [0, 1]
    # The fitted similarity in normalised coordinates (reference [0,1]^2 -> query [0,1]^2, the query as it is):
    # the placement verification starts from.
    transform: tuple[float, ...] = ()


@dataclass(frozen=True)
class FeatureThresholds:
    """Chosen with bench/calibrate_lookalike.py on the real-photo set (features.json)."""

    max_hamming: int = 64  # a tentative descriptor match
    min_votes: int = 8  # tentative matches before RANSAC is tried
    min_inliers: int = 14
    min_coverage: float = 0.06  # of the reference's area
    reprojection: float = 0.02  # RANSAC threshold, as a share of the query's longest side
    scale_range: tuple[float, float] = (0.15, 8.0)
    # Reposts keep their orientation (mirrors are searched as such, quarter turns by the hash
    # tier's --rotations): a fit turned further is keypoints of two unrelated pictures lining up.
    max_rotation: float = 30.0


def feature_pipeline_id() -> str:
    """Everything that changes the stored keypoints (kept in each shard's meta.json)."""
    return f"orb:opencv={cv2.__version__}|side={EXTRACT_SIDE}|keys={REFERENCE_KEYPOINTS}|grid={GRID}|fast=12|levels=8"


def decode_for_features(source, side: int = EXTRACT_SIDE) -> Image.Image:
    """Open (bombs refused), with JPEGs decoded by libjpeg near `side` (DCT scaling)."""
    from ..images import open_image

    def reduced(image: Image.Image) -> None:
        if image.format == "JPEG":
            scale = side / max(image.size)
            image.draft("RGB", (max(1, round(image.width * scale)), max(1, round(image.height * scale))))

    return open_image(source, reduced)


def _gray(image: Image.Image, side: int = EXTRACT_SIDE) -> np.ndarray:
    image = to_rgb(image)  # the hash pipeline's conversion: 16-bit stretched, alpha over white
    image = image.convert("L")
    scale = side / max(image.size)
    if scale < 1:
        image = image.resize(
            (max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.Resampling.BILINEAR
        )
    return np.asarray(image)


def _orb(keypoints: int) -> cv2.ORB:
    return cv2.ORB.create(
        nfeatures=keypoints, scaleFactor=1.2, nlevels=8, edgeThreshold=15, patchSize=31, fastThreshold=12
    )


def _spread(points: Sequence, keep: int, width: int, height: int) -> list:
    """The strongest keypoints per grid cell, so a crop of any part keeps some of them."""
    per_cell = max(1, keep // (GRID * GRID))
    cells: dict[tuple[int, int], list] = {}
    for point in sorted(points, key=lambda p: -p.response):
        cell = (min(GRID - 1, int(point.pt[0] * GRID / width)), min(GRID - 1, int(point.pt[1] * GRID / height)))
        cells.setdefault(cell, []).append(point)
    chosen = [p for cell in cells.values() for p in cell[:per_cell]]
    rest = sorted((p for cell in cells.values() for p in cell[per_cell:]), key=lambda p: -p.response)
    return (chosen + rest)[:keep]


def extract(
    image: Image.Image,
    keypoints: int,
    mirror: bool = False,
    spread: bool = False,
    side: int = EXTRACT_SIDE,
    with_thumbnail: bool = False,
) -> Features:
    """ORB keypoints and descriptors of `image` (or of its mirror image), at `side` pixels at most.
    Positions are in pixels of that size; `size` says which, so two images compare whatever their sides.
    `with_thumbnail` keeps the grey thumbnail verification compares (references only)."""
    gray = _gray(image, side)
    kept = thumbnail(gray) if with_thumbnail else None
    if mirror:
        gray = np.ascontiguousarray(gray[:, ::-1])
    height, width = gray.shape
    if min(height, width) < 32:
        return Features(np.zeros((0, 2), np.float32), np.zeros((0, DESCRIPTOR_BYTES), np.uint8), (width, height), kept)
    orb = _orb(keypoints * 3 if spread else keypoints)
    points = orb.detect(gray, None)
    if spread:
        points = _spread(points, keypoints, width, height)
    points, descriptors = orb.compute(gray, points)
    if descriptors is None or not points:
        return Features(np.zeros((0, 2), np.float32), np.zeros((0, DESCRIPTOR_BYTES), np.uint8), (width, height), kept)
    xy = np.array([p.pt for p in points], dtype=np.float32)
    return Features(xy, descriptors.astype(np.uint8), (width, height), kept)


RANSAC_CONFIDENCE = 0.995
MAX_DRAWS = 2000


def ransac_draws(matches: int, min_inliers: int) -> int:
    """RANSAC's draws for `matches` tentative matches: enough to draw two inliers of the smallest fit
    that can pass (`min_inliers` of them) with RANSAC's own confidence, at most MAX_DRAWS.

    RANSAC stops early once a large consensus is found, but a candidate with none (most candidates:
    keypoints of unrelated pictures that vote alike) ran all 2,000 draws; 60 matches of which 16 would
    be inliers need 72. Draws are the same sequence either way (OpenCV seeds its own generator), so a
    fit found within the cap is the same fit."""
    share = min_inliers / max(matches, 1)
    if share >= 1:
        return 1
    return int(min(MAX_DRAWS, math.ceil(math.log(1 - RANSAC_CONFIDENCE) / math.log(1 - share * share))))


def verify(
    query: Features,
    reference_xy: np.ndarray,
    reference_size: tuple[int, int],
    query_index: np.ndarray,
    reference_index: np.ndarray,
    mirrored: bool,
    thresholds: FeatureThresholds,
) -> FeatureMatch | None:
    """RANSAC similarity from the reference's keypoints to the query's; None if it does not hold."""
    if len(query_index) < max(thresholds.min_votes, 3):
        return None
    src = reference_xy[reference_index].astype(np.float32)
    dst = query.xy[query_index].astype(np.float32)
    threshold = thresholds.reprojection * max(query.size)
    matrix, mask = cv2.estimateAffinePartial2D(
        src,
        dst,
        method=cv2.RANSAC,
        ransacReprojThreshold=threshold,
        maxIters=ransac_draws(len(src), thresholds.min_inliers),
        confidence=RANSAC_CONFIDENCE,
        refineIters=10,
    )
    if matrix is None or mask is None:
        return None
    keep = mask.ravel().astype(bool)
    inliers = int(keep.sum())
    if inliers < thresholds.min_inliers:
        return None
    scale = math.hypot(matrix[0, 0], matrix[1, 0])
    low, high = thresholds.scale_range
    rotation = math.degrees(math.atan2(matrix[1, 0], matrix[0, 0]))
    if not low <= scale <= high or abs(rotation) > thresholds.max_rotation:
        return None
    # One reference keypoint matched many times is not many inliers.
    pixels = np.round(src[keep]).astype(np.int64)
    unique = len(np.unique((pixels[:, 0] << 32) + pixels[:, 1]))
    if unique < thresholds.min_inliers:
        return None
    rw, rh = reference_size
    qw, qh = query.size
    rx, ry = src[keep, 0] / rw, src[keep, 1] / rh
    qx, qy = dst[keep, 0] / qw, dst[keep, 1] / qh
    coverage = float((rx.max() - rx.min()) * (ry.max() - ry.min()))
    if coverage < thresholds.min_coverage:
        return None
    # reference pixels -> query pixels, as a map of [0,1]^2 -> [0,1]^2 (of the query as it is)
    normalised = np.diag([1 / qw, 1 / qh]) @ matrix @ np.diag([rw, rh, 1.0])
    if mirrored:  # the query was searched flipped: give its coordinates in the query as it is
        qx = 1.0 - qx
        normalised = np.vstack([-normalised[0] + np.array([0, 0, 1.0]), normalised[1]])
    pairs = list(map(tuple, np.stack([rx, ry, qx, qy], axis=1).astype(np.float64).tolist()))
    # Both images are extracted at the same longest side, so the fitted scale compares their sizes.
    return FeatureMatch(
        inliers,
        round(scale, 3),
        round(rotation, 1),
        mirrored,
        (float(rx.min()), float(ry.min()), float(rx.max()), float(ry.max())),
        (float(qx.min()), float(qy.min()), float(qx.max()), float(qy.max())),
        round(coverage, 3),
        pairs,
        tuple(round(float(v), 5) for v in normalised.ravel()),
    )


def decode_pair(source, side: int = EXTRACT_SIDE) -> tuple[Image.Image, Image.Image]:
    """(the hash pipeline's decode, a decode near `side` for features) with one decode where
    they agree: only a JPEG is decoded twice (libjpeg's reduced decodes differ by scale)."""
    image = decode_for_features(source, side)
    if image.format == "JPEG":
        return decode(source), to_rgb(image)
    full = to_rgb(image)
    return shrink(full, DECODE_SIDE), full


def reference_features(source) -> Features:
    """What the index stores for one reference image (file path or bytes)."""
    return extract(decode_for_features(source), REFERENCE_KEYPOINTS, spread=True, with_thumbnail=True)


def query_features(image: Image.Image) -> tuple[Features, Features]:
    """A query's keypoints, as it is and mirrored."""
    # Spread over a grid too: a picture that is one tile of a collage gets its share of keypoints.
    return (
        extract(image, QUERY_KEYPOINTS, side=QUERY_SIDE, spread=True),
        extract(image, QUERY_KEYPOINTS, mirror=True, side=QUERY_SIDE, spread=True),
    )


def reference_thumbnail(source) -> np.ndarray | None:
    """A reference's verification thumbnail decoded from its file; None if the file is gone or unreadable."""
    try:
        return thumbnail(_gray(decode_for_features(source)))
    except (OSError, ValueError):  # UnreadableImage is a ValueError
        return None
