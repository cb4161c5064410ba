"""Side-by-side evidence for a match: the render, the reference, and the distances under them."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageOps

PANEL = 256


def side_by_side(render: Image.Image, reference: Image.Image, caption: str, out: Path) -> Path:
    """Write render | reference, each fitted into a square panel, with a caption strip."""
    canvas = Image.new("RGB", (PANEL * 2 + 12, PANEL + 34), "white")
    for i, image in enumerate((render, reference)):
        tile = ImageOps.contain(image.convert("RGB"), (PANEL, PANEL))
        canvas.paste(tile, (i * (PANEL + 12) + (PANEL - tile.width) // 2, (PANEL - tile.height) // 2))
    ImageDraw.Draw(canvas).text((6, PANEL + 8), caption, fill="black")
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out, "PNG")
    return out
