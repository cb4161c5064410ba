"""Side-by-side evidence for a match: the render, the reference, and the distances under them;
for a feature-tier match, the matched part framed on both and its inlier pairs joined by lines,
so a reviewer sees at once "this part of our render is that part of their picture"."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageOps

GRADE_WORDS = {
    "copy": "COPY",
    "derived": "DERIVED PART",
    "unverified": "UNVERIFIED MATCH",
    "similar": "similar composition (information, not blocking)",
}


def match_caption(via: str, hit, reference: dict, verification) -> str:
    """The evidence image's caption: the grade and why, then the hash distances (* within threshold)."""
    v = verification
    why = (
        f"{v.agreement:.0%} of {v.textured} detailed blocks agree ({v.placement})"
        if v.grade != "unverified"
        else v.reason
    )
    return f"{GRADE_WORDS[v.grade]} ({via}, {hit.tier}): {reference['competitor']}; {why}\n" + "  ".join(
        f"{k}={val}" + ("*" if k in hit.reasons else "") for k, val in hit.distances.items()
    )


PANEL = 320
GAP = 12
REGION = (230, 40, 40)
LINK = (40, 160, 230)


def side_by_side(
    render: Image.Image, reference: Image.Image, caption: str, out: Path, region: dict | None = None
) -> Path:
    """Write render | reference, each fitted into a square panel, with a caption strip."""
    canvas = Image.new("RGB", (PANEL * 2 + GAP, PANEL + 44), "white")
    draw = ImageDraw.Draw(canvas)
    placed = []
    for i, image in enumerate((render, reference)):
        tile = ImageOps.contain(image.convert("RGB"), (PANEL, PANEL))
        x, y = i * (PANEL + GAP) + (PANEL - tile.width) // 2, (PANEL - tile.height) // 2
        canvas.paste(tile, (x, y))
        placed.append((x, y, tile.width, tile.height))

    def point(panel: int, fx: float, fy: float) -> tuple[float, float]:
        x, y, w, h = placed[panel]
        return x + fx * w, y + fy * h

    if region:
        for rx, ry, qx, qy in region.get("pairs", [])[:60]:
            draw.line((*point(0, qx, qy), *point(1, rx, ry)), fill=LINK, width=1)
        for panel, box in ((0, region["query_box"]), (1, region["reference_box"])):
            draw.rectangle((*point(panel, box[0], box[1]), *point(panel, box[2], box[3])), outline=REGION, width=3)
    draw.multiline_text((6, PANEL + 4), caption, fill="black", spacing=1)
    if region:
        draw.text(
            (6, PANEL + 28),
            f"features: {region['inliers']} inliers, scale {region['scale']}, rotation "
            f"{region['rotation']}°" + (", mirrored" if region["mirrored"] else ""),
            fill=REGION,
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out, "PNG")
    return out
