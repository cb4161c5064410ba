"""Re-create an image from its ledger record, and say whether the pixels are the same.

Everything comes from the record: model (whose weights must hash to the recorded SHA-256),
scheduler class and config, dtype and speed options, family arguments, prompt, seed, steps, guidance, size, batch size, and the reference
image for image-to-image (whose content must also match). On CPU the result is
pixel-identical; on a GPU, kernels and library builds decide (see README).
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..brand import WatermarkSettings
from ..errors import EstampilleError
from ..paths import file_sha256
from ..records import Provenance, Render
from ..settings import Settings
from .families import SpeedOptions
from .registry import resolve_model
from .renderer import RenderJob, load_model, render


@dataclass(frozen=True)
class Rerendered:
    image: Image.Image
    identical: bool  # same PNG bytes as recorded
    differing_pixels: int | None = None  # when the original file is at hand to compare with
    max_difference: int | None = None


def rerender(record: Render, settings: Settings, original: Path | None = None) -> Rerendered:
    resolved = resolve_model(record.model["id"], settings.models_dir, settings.home)
    loaded = load_model(
        resolved,
        settings.home / "weights-sha256.json",
        scheduler=record.scheduler["class"],
        scheduler_config=record.scheduler["config"],
        speed=SpeedOptions.from_record(record.options),
    )
    if loaded.weights_sha256 != record.model["weights_sha256"]:
        raise EstampilleError(
            f"the weights of {resolved.id} at {resolved.load_from} are not the recorded ones "
            f"(recorded sha256 {record.model['weights_sha256'][:16]}…, found "
            f"{loaded.weights_sha256[:16]}…): restore that model version to re-create the image"
        )
    reference = None
    if record.reference:
        reference = Path(record.reference["path"])
        if not reference.is_file() or file_sha256(reference) != record.reference["sha256"]:
            raise EstampilleError(f"the reference image {reference} is missing or not the recorded one")
    job = RenderJob.from_record(record, reference)
    result = next(render(loaded, [job], record.batch_size, pad=True))
    if result.image is None:
        raise EstampilleError(f"could not re-create {record.image_id}: {result.error}")
    buffer = io.BytesIO()
    result.image.save(buffer, "PNG")
    identical = hashlib.sha256(buffer.getvalue()).hexdigest() == record.sha256
    if original is None or not original.is_file():
        return Rerendered(result.image, identical)
    difference = np.abs(
        np.asarray(result.image, dtype=np.int16) - np.asarray(Image.open(original).convert("RGB"), dtype=np.int16)
    )
    return Rerendered(result.image, identical, int((difference.max(axis=-1) > 0).sum()), int(difference.max()))


@dataclass(frozen=True)
class SignedPixels:
    identical: bool
    differing_pixels: int
    file: str


def compare_signed(image: Image.Image, signed: Provenance, signed_path: Path) -> SignedPixels | None:
    """Mark a re-created render as signing did (same method, strength and payload) and compare it
    with the signed file's pixels: the watermark is deterministic, so they must be the same.
    None when the image was signed without a mark or its signed file is gone."""
    from ..provenance.sign import watermarked_pixels

    mark = signed.watermark
    if not mark or not signed_path.is_file():
        return None

    # The strength the signed file was marked with (its record), not the brand's setting of today.
    settings = WatermarkSettings(enabled=True, strength=mark["strength"])
    marked, _ = watermarked_pixels(image, signed.image_id, settings, steps=(1.0,))
    difference = np.asarray(marked, dtype=np.int16) - np.asarray(Image.open(signed_path).convert("RGB"), dtype=np.int16)
    differing = int((np.abs(difference).max(axis=-1) > 0).sum())
    return SignedPixels(differing == 0, differing, signed.file)
