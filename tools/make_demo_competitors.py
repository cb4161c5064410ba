"""Make the demo brand's competitor images and its own reference photo, with nothing downloaded.

Two fictional competitors each get procedural bakery-like pictures (loaves, croissants,
tarts drawn with Pillow) and transformed copies of sample photos that scikit-image ships
in its wheel. Deterministic: the same files every time.

    .venv/bin/python tools/make_demo_competitors.py brand_assets/demo
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps

SIZE = (384, 288)
SAMPLES = ("coffee", "chelsea", "astronaut", "rocket", "hubble_deep_field", "gravel", "brick", "grass")


def sample_photo(name: str) -> Image.Image:
    import skimage.data

    array = getattr(skimage.data, name)()
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    return Image.fromarray(array.astype(np.uint8)).convert("RGB")


def pastry_scene(rng: random.Random) -> Image.Image:
    """A table with loaves and croissants: warm palette, soft blur, like a bakery shot."""
    background = tuple(rng.randint(150, 235) for _ in range(3))
    image = Image.new("RGB", SIZE, background)
    draw = ImageDraw.Draw(image)
    draw.rectangle(
        [0, SIZE[1] * rng.uniform(0.55, 0.75), SIZE[0], SIZE[1]],
        fill=(rng.randint(90, 150), rng.randint(60, 100), rng.randint(30, 60)),
    )
    for _ in range(rng.randint(2, 6)):
        cx, cy = rng.randint(40, SIZE[0] - 40), rng.randint(90, SIZE[1] - 40)
        w, h = rng.randint(40, 130), rng.randint(25, 70)
        crust = (rng.randint(170, 230), rng.randint(110, 160), rng.randint(40, 80))
        if rng.random() < 0.5:  # loaf with scores
            draw.ellipse([cx - w, cy - h, cx + w, cy + h], fill=crust, outline=(90, 50, 20), width=3)
            for k in range(-2, 3):
                draw.line(
                    [cx + k * w // 3 - 10, cy - h // 2, cx + k * w // 3 + 10, cy + h // 2],
                    fill=(240, 220, 170),
                    width=4,
                )
        else:  # croissant as a fan of arcs
            for k in range(5):
                r = w - k * w // 6
                draw.pieslice(
                    [cx - r, cy - r // 2, cx + r, cy + r // 2],
                    200 + k * 5,
                    340 - k * 5,
                    fill=tuple(max(0, c - k * 12) for c in crust),
                )
    return image.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.5)))


def transformed(photo: Image.Image, rng: random.Random) -> Image.Image:
    w, h = photo.size
    crop = rng.uniform(0.6, 0.95)
    x, y = rng.randint(0, int(w * (1 - crop))), rng.randint(0, int(h * (1 - crop)))
    image = photo.crop((x, y, x + int(w * crop), y + int(h * crop))).resize(SIZE)
    image = ImageEnhance.Color(image).enhance(rng.uniform(0.6, 1.4))
    return ImageOps.mirror(image) if rng.random() < 0.3 else image


def main(brand_folder: Path) -> None:
    rng = random.Random(48)
    out = brand_folder / "competitors"
    for competitor, count in (("boulangerie-doree", 16), ("le-fournil-express", 16)):
        folder = out / competitor
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            image = (
                pastry_scene(rng) if i % 2 == 0 else transformed(sample_photo(SAMPLES[(i // 2) % len(SAMPLES)]), rng)
            )
            image.save(folder / f"{competitor}-{i:02d}.jpg", "JPEG", quality=82)
    print(f"wrote {sum(1 for _ in out.rglob('*.jpg'))} images under {out}")
    # The brand's own photo of its Saturday workshop table, used as an image-to-image reference.
    (brand_folder / "references").mkdir(exist_ok=True)
    pastry_scene(random.Random(2026)).save(brand_folder / "references" / "atelier-table.jpg", "JPEG", quality=85)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "brand_assets/demo"))
