"""Verification: a candidate is a lookalike only if the pictures agree once laid on each other.

Both tiers propose candidates cheaply and at a per-pair false-positive rate that is small per pair
but not per render: against 100,000 references, 0.02% of pairs is 20 false flags on every render.
Hashes see a coarse layout (a bright subject centred on a dark ground matches every other one);
RANSAC lines up 17 to 31 keypoints of two unrelated textures now and then. What neither does is
look at the pixels of the matched part.

So every candidate is checked here, whichever tier found it: the query is warped onto a small grey
thumbnail of the reference (stored in the index at ingest, or decoded from the catalog's file) under
each placement the tiers suggest (the RANSAC similarity; the whole frame as it is or mirrored; the
query's content regions; the hash windows, both ways) until one agrees clearly, the best placement
is adjusted by ECC when none did, and it is scored block by block: the share of detailed 8 x 8 blocks whose
normalised cross-correlation is high, once each block's mean and linear ramp are removed (so it
ignores recolouring, contrast and grey conversion, and smooth gradients count for nothing). Blocks
that are one straight edge do not count either. A copy, a crop or a screenshot of a picture agrees in
most of its blocks; two pictures that merely share a layout agree in few, since their detail differs.
The thresholds were chosen by measurement on real photographs and real pictures from Debian packages
(bench/lookalike_verification.py, bench/lookalike_false_flags.py): see thresholds.json ("verification").

The grades that come out (see `Grade`):
- copy: the whole reference is in the query, or the query is the whole reference;
- derived: a part of one is in the other (a crop, a collage tile, the picture inside a screenshot);
- similar: a hash candidate whose pixels do not agree: a similar composition, shown, never blocking;
- unverified: the reference's pixels could not be had (an old index whose file moved): blocking, as
  before verification existed, with the fix in the reason.
A feature-tier candidate whose pixels do not agree is dropped: coincidental geometry is not a
composition anyone would recognise.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np
from PIL import Image

from .hashing import WINDOWS

THUMB = 128  # side of the stored reference thumbnail (grey, stretched to a square)
BLOCK = 8  # block side, in thumbnail pixels
QUERY_VIEW = 512  # longest side of the query kept for verification
BLUR = 1.0  # sigma before comparing: tolerance for resampling, JPEG and a pixel of misalignment
# A placement that passes agreeing at least this much is clear-cut: the search stops there (later
# placements could raise the score, never change the verdict: a copy brings ~60 candidates at a
# million references, each one tried up to 21 ways). A best placement below it is adjusted by ECC.
CLEAR_CUT = 0.8

Grade = Literal["copy", "derived", "similar", "unverified"]
BLOCKING: frozenset[str] = frozenset({"copy", "derived", "unverified"})


@dataclass(frozen=True)
class VerifyThresholds:
    """Chosen with bench/lookalike_verification.py (thresholds.json, "verification", is what runs;
    these defaults are the same values)."""

    min_textured: int = 16  # textured blocks the placement must show (of 256)
    block_ncc: float = 0.6  # a block agrees when its correlation reaches this
    min_agreement: float = 0.6  # share of textured blocks that must agree
    texture_std: float = 3.0  # grey-level std of a block for it to count as textured
    # A block that is one straight edge (structure-tensor coherence near 1) agrees with any other picture
    # that has an edge there: the outline of a centred subject is layout, not content. Only blocks with
    # detail in more than one direction count.
    max_coherence: float = 0.95
    # Only blocks whose eight neighbours are textured too: the inside of the picture's detail, not the
    # rim where a subject meets a plain ground (two subjects of one outline agree along it).
    interior: bool = False
    whole: float = 0.8  # overlap of both pictures above which a derived part is a copy
    # A low-detail picture (a soft photo, a galaxy on black) shows few detailed blocks: a copy of it
    # agrees in all of them, while unrelated low-detail pictures agreed in 60-92% (false flags at 10,000
    # references, bench/lookalike_false_flags.py). Below min_textured, nearly every block must agree.
    min_textured_few: int = 3
    few_agreement: float = 0.95

    def passes(self, agreement: float, textured: int) -> bool:
        if textured >= self.min_textured:
            return agreement >= self.min_agreement
        return textured >= self.min_textured_few and agreement >= max(self.few_agreement, self.min_agreement)


@dataclass(frozen=True)
class Verification:
    grade: Grade
    agreement: float  # share of textured blocks that agree under the best placement
    textured: int  # textured blocks seen
    placement: str  # which placement: features, whole, mirror, region n, window n, ...
    reference_shown: float  # share of the reference's area inside the query
    query_covered: float  # share of the query's area the reference covers
    reason: str = ""

    @property
    def blocking(self) -> bool:
        return self.grade in BLOCKING

    def as_dict(self) -> dict:
        return {
            "grade": self.grade,
            "agreement": round(self.agreement, 3),
            "textured_blocks": self.textured,
            "placement": self.placement,
            "reference_shown": round(self.reference_shown, 3),
            "query_covered": round(self.query_covered, 3),
            **({"reason": self.reason} if self.reason else {}),
        }


def thumbnail(gray: np.ndarray) -> np.ndarray:
    """The reference's verification thumbnail from its grey extraction image."""
    return cv2.resize(gray, (THUMB, THUMB), interpolation=cv2.INTER_AREA)


@dataclass
class QueryView:
    """A query as verification sees it: a grey pyramid (full, half, quarter...) and its content regions."""

    levels: list[np.ndarray]
    regions: list[tuple[float, float, float, float]] = field(default_factory=list)

    @classmethod
    def of(cls, image: Image.Image, regions: Iterable[tuple[float, float, float, float]] = ()) -> QueryView:
        gray = image.convert("L")
        scale = QUERY_VIEW / max(gray.size)
        if scale < 1:
            gray = gray.resize(
                (max(1, round(gray.width * scale)), max(1, round(gray.height * scale))), Image.Resampling.BILINEAR
            )
        levels = [np.asarray(gray, dtype=np.float32)]
        while min(levels[-1].shape) >= 2 * THUMB:
            levels.append(np.asarray(cv2.pyrDown(levels[-1]), dtype=np.float32))
        return cls(levels, list(regions))


def _box(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """Reference [0,1]^2 onto the query box (x0, y0, x1, y1)."""
    return np.array([[x1 - x0, 0, x0], [0, y1 - y0, y0]], dtype=np.float64)


def _inside(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """The reference's box (x0, y0, x1, y1) onto the whole query (the query is that crop of the reference)."""
    return np.array([[1 / (x1 - x0), 0, -x0 / (x1 - x0)], [0, 1 / (y1 - y0), -y0 / (y1 - y0)]], dtype=np.float64)


def _mirrored(matrix: np.ndarray) -> np.ndarray:
    """The same placement on the mirrored query: x -> 1 - x."""
    return np.vstack([-matrix[0] + np.array([0, 0, 1.0]), matrix[1]])


IDENTITY = _box(0, 0, 1, 1)


def placements(
    view: QueryView, transform: Iterable[float] | None, rotations: bool = False
) -> list[tuple[str, np.ndarray]]:
    """Every placement (reference normalised coordinates -> query normalised coordinates) to try."""
    found: list[tuple[str, np.ndarray]] = []
    if transform is not None:
        found.append(("features", np.asarray(list(transform), dtype=np.float64).reshape(2, 3)))
    found += [("whole", IDENTITY), ("whole, mirrored", _mirrored(IDENTITY))]
    for n, box in enumerate(view.regions):
        found += [(f"region {n + 1}", _box(*box)), (f"region {n + 1}, mirrored", _mirrored(_box(*box)))]
    for n, box in enumerate(WINDOWS):
        found += [(f"query in window {n + 1}", _inside(*box)), (f"window {n + 1} of query", _box(*box))]
    if rotations:
        for turns in (1, 2, 3):
            turn = np.array([[0, -1, 1], [1, 0, 0]], dtype=np.float64)  # a quarter turn of [0,1]^2
            m = IDENTITY
            for _ in range(turns):
                m = turn @ np.vstack([m, [0, 0, 1]])
            found += [(f"{turns * 90}° turn", m), (f"{turns * 90}° turn, mirrored", _mirrored(m))]
    return found


TO_REF = np.array([[1 / THUMB, 0, 0.5 / THUMB], [0, 1 / THUMB, 0.5 / THUMB], [0, 0, 1]])


def _level(view: QueryView, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the pyramid level whose pixels are nearest the thumbnail's under `matrix`, its pixel scaling)."""
    h0, w0 = view.levels[0].shape
    step = math.sqrt(abs(np.linalg.det(matrix[:, :2])) * w0 * h0) / THUMB
    image = view.levels[min(len(view.levels) - 1, max(0, int(math.floor(math.log2(max(step, 1.0))))))]
    h, w = image.shape
    return image, np.array([[w, 0, -0.5], [0, h, -0.5], [0, 0, 1]])


def _warp(view: QueryView, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The query sampled on the reference's THUMB x THUMB grid under `matrix`, and where it is defined."""
    image, to_query = _level(view, matrix)
    warp = (to_query @ np.vstack([matrix, [0, 0, 1]]) @ TO_REF)[:2]
    sampled = cv2.warpAffine(
        image,
        warp.astype(np.float32),
        (THUMB, THUMB),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=-1.0,
    )
    return sampled, sampled >= 0


def refine(view: QueryView, reference: np.ndarray, matrix: np.ndarray) -> np.ndarray | None:
    """The placement adjusted by ECC (OpenCV's enhanced-correlation alignment) from `matrix`: a copy
    turned a few degrees or cropped a little sits a few pixels off every placement tried; None when
    ECC does not converge or wanders off (more than a tenth of the picture, or a scale change past 20%)."""
    image, to_query = _level(view, matrix)
    start = (to_query @ np.vstack([matrix, [0, 0, 1]]) @ TO_REF)[:2].astype(np.float32)
    template = cv2.GaussianBlur(reference.astype(np.float32), (0, 0), 1.5)
    try:
        _, found = cv2.findTransformECC(
            template,
            cv2.GaussianBlur(image, (0, 0), 1.5),
            start.copy(),
            cv2.MOTION_AFFINE,
            (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 40, 1e-4),
            None,
            1,
        )  # type: ignore[call-overload]  # the stubs miss mask=None
    except cv2.error:
        return None
    refined = np.linalg.inv(to_query) @ np.vstack([found.astype(np.float64), [0, 0, 1]]) @ np.linalg.inv(TO_REF)
    refined = refined[:2]
    moved = np.abs(refined[:, 2] + refined[:, :2].sum(axis=1) / 2 - matrix[:, 2] - matrix[:, :2].sum(axis=1) / 2)
    ratio = abs(np.linalg.det(refined[:, :2])) / max(abs(np.linalg.det(matrix[:, :2])), 1e-9)
    if moved.max() > 0.1 or not 0.8 <= ratio <= 1.25:
        return None
    return refined


def _blocks(a: np.ndarray) -> np.ndarray:
    n = THUMB // BLOCK
    return a.reshape(n, BLOCK, n, BLOCK).transpose(0, 2, 1, 3).reshape(n * n, BLOCK * BLOCK)


def _detrender() -> np.ndarray:
    """The projection that removes a block's mean and linear ramp: what is left is its detail. Two
    smooth ramps (a blob's rim, a galaxy's halo, a sky gradient) correlate whatever they show."""
    y, x = np.mgrid[0:BLOCK, 0:BLOCK].astype(np.float64)
    basis = np.stack([np.ones(BLOCK * BLOCK), x.ravel() - x.mean(), y.ravel() - y.mean()], axis=1)
    return (np.eye(BLOCK * BLOCK) - basis @ np.linalg.pinv(basis)).astype(np.float32)


DETREND = _detrender()


def coherence(image: np.ndarray) -> np.ndarray:
    """Per block, how much its gradients share one direction: 1 for a straight edge, near 0 for texture."""
    gx = cv2.Sobel(image, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(image, cv2.CV_32F, 0, 1, ksize=3)
    jxx, jyy, jxy = (_blocks(v).sum(axis=1) for v in (gx * gx, gy * gy, gx * gy))
    return np.sqrt((jxx - jyy) ** 2 + 4 * jxy**2) / np.maximum(jxx + jyy, 1e-6)


@dataclass(frozen=True)
class PreparedReference:
    """What agreement needs of the reference, computed once per candidate (not per placement)."""

    blocks: np.ndarray  # (B, BLOCK*BLOCK) blurred, without each block's mean and linear ramp
    spread: np.ndarray  # (B,) their standard deviation
    coherence: np.ndarray  # (B,)

    @classmethod
    def of(cls, reference: np.ndarray) -> PreparedReference:
        ref = cv2.GaussianBlur(reference.astype(np.float32), (0, 0), BLUR)
        blocks = _blocks(ref) @ DETREND
        return cls(blocks, np.sqrt((blocks**2).mean(axis=1)), coherence(ref))


def agreement(
    reference: PreparedReference, sampled: np.ndarray, valid: np.ndarray, thresholds: VerifyThresholds
) -> tuple[float, int]:
    """(share of textured, fully visible blocks that correlate, how many such blocks)."""
    query = cv2.GaussianBlur(np.where(valid, sampled, 0).astype(np.float32), (0, 0), BLUR)
    # The blur reaches 2 pixels in from an undefined border: a block counts when it is fully defined
    # and mostly clear of that border.
    inner = cv2.erode(valid.astype(np.uint8), np.ones((5, 5), np.uint8))
    seen = (_blocks(valid.astype(np.uint8)).min(axis=1) > 0) & (_blocks(inner).mean(axis=1) > 0.5)
    qb = _blocks(query) @ DETREND
    rb, rs, qs = reference.blocks, reference.spread, np.sqrt((qb**2).mean(axis=1))
    textured = seen & (rs >= thresholds.texture_std) & (qs >= thresholds.texture_std * 0.5)
    if thresholds.max_coherence < 1:
        textured &= reference.coherence <= thresholds.max_coherence
    if thresholds.interior:
        n = THUMB // BLOCK
        grid = textured.reshape(n, n).astype(np.uint8)
        textured &= cv2.erode(grid, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_REPLICATE).ravel().astype(bool)
    count = int(textured.sum())
    if count == 0:
        return 0.0, 0
    ncc = (rb[textured] * qb[textured]).mean(axis=1) / (rs[textured] * qs[textured])
    return float((ncc >= thresholds.block_ncc).mean()), count


def verify(
    view: QueryView,
    reference: np.ndarray | None,
    transform: Iterable[float] | None,
    by_hash: bool,
    thresholds: VerifyThresholds,
    rotations: bool = False,
) -> Verification | None:
    """The grade of one candidate; None when it is dropped (a feature-only candidate that does not agree)."""
    if reference is None:
        return Verification(
            "unverified",
            0.0,
            0,
            "",
            0.0,
            0.0,
            "the reference's pixels are not in the index and its file cannot be read: run "
            "`estampille lookalike index --upgrade` with the files in place",
        )
    prepared = PreparedReference.of(reference)
    best = (-1.0, 0, "", IDENTITY, np.zeros((THUMB, THUMB), bool))
    for name, matrix in placements(view, transform, rotations):
        sampled, valid = _warp(view, matrix)
        if valid.mean() < 0.25:
            continue
        score, textured = agreement(prepared, sampled, valid, thresholds)
        if textured < thresholds.min_textured_few:
            score = min(score, 0.0)
        if (thresholds.passes(score, textured), score, textured) > (thresholds.passes(*best[:2]), *best[:2]):
            best = (score, textured, name, matrix, valid)
            if score >= CLEAR_CUT and thresholds.passes(score, textured):
                break
    if best[2] and best[0] < CLEAR_CUT:
        refined = refine(view, reference, best[3])
        if refined is not None:
            sampled, valid = _warp(view, refined)
            score, textured = agreement(prepared, sampled, valid, thresholds)
            # ECC can line up a handful of blocks of two unrelated pictures (it maximises their correlation):
            # a refined placement must show the full number of detailed blocks.
            full = textured >= thresholds.min_textured and score >= thresholds.min_agreement
            if full and (True, score, textured) > (thresholds.passes(*best[:2]), *best[:2]):
                best = (score, textured, best[2] + ", refined", refined, valid)
    score, textured, name, matrix, valid = best
    shown = float(valid.mean())
    covered = min(1.0, abs(float(np.linalg.det(matrix[:, :2]))) * shown)
    if thresholds.passes(score, textured):
        grade: Grade = "copy" if shown >= thresholds.whole and covered >= thresholds.whole * 0.75 else "derived"
        return Verification(grade, score, textured, name, shown, covered)
    if by_hash:
        reason = (
            f"only {max(score, 0):.0%} of {textured} textured blocks agree under the best placement ({name})"
            if textured >= thresholds.min_textured_few
            else "too little detail to compare (flat or soft pictures)"
        )
        return Verification(
            "similar", max(score, 0.0), textured, name, shown, covered, f"similar composition, not a copy: {reason}"
        )
    return None
