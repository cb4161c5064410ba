"""A lookalike match is worded in one place (lookalike/describe.py): `estampille lookalike check`
prints the same headline, pixel check and region that the review pages and the evidence caption
show, built from the same `records.Match` the batch records."""

from __future__ import annotations

import io
import json

from PIL import Image, ImageOps

from estampille.cli import main
from estampille.lookalike import describe
from estampille.records import Match

from .conftest import DEMO_BRAND

COMPETITOR = DEMO_BRAND / "competitors" / "boulangerie-doree"


def test_the_cli_prints_each_match_in_the_shared_wording(tmp_path, capsys):
    index = tmp_path / "index"
    assert (
        main(["lookalike", "index", "--index", str(index), "--competitor", "Boulangerie Dorée", str(COMPETITOR)]) == 0
    )
    copy = tmp_path / "copy.jpg"
    buffer = io.BytesIO()
    ImageOps.mirror(Image.open(COMPETITOR / "boulangerie-doree-07.jpg")).convert("RGB").save(buffer, "JPEG", quality=60)
    copy.write_bytes(buffer.getvalue())
    capsys.readouterr()
    assert main(["lookalike", "check", "--index", str(index), "--json", str(copy)]) == 1
    [result] = json.loads(capsys.readouterr().out)
    first = result["matches"][0]
    assert main(["lookalike", "check", "--index", str(index), str(copy)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{copy}: LOOKALIKE"
    # The record the batch would keep for this match, worded by describe: the CLI's lines are those.
    record = Match(
        source=first["competitor"],
        reference=first["source"],
        distances=first["distances"],
        verdict=first["verdict"],
        tier=first["tier"],
        region=first["region"],
        grade=first["grade"],
        verification=first["verification"],
    )
    headline = describe.headline(record)
    assert headline.startswith("COPY (render, ") and headline.endswith(": Boulangerie Dorée")
    assert f"  {headline}: {first['source']}" in out
    pixels = describe.pixels(record)
    assert "detailed blocks agree" in pixels and f"    pixels: {pixels}" in out
    if record.region:
        assert f"    features: {describe.region(record.region)}" in out
    # The evidence caption: headline and pixel check, then the distances, starred within threshold
    caption = describe.caption(record, within=first["reasons"])
    assert caption.splitlines()[0] == f"{headline}; {pixels}"
    assert all(f"{k}={d}" in caption for k, d in first["distances"].items())
    assert any(f"{k}={first['distances'][k]}*" in caption for k in first["reasons"] if k in first["distances"])


def test_a_match_recorded_before_verification_is_still_worded():
    old = Match(source="rival", reference="rival/a.png", distances={"phash": 3}, verdict="lookalike")
    assert describe.headline(old) == "lookalike (render, hash): rival"
    assert describe.pixels(old) == "" and describe.region(old.region) == ""
    region = {
        "inliers": 42,
        "reference_box": [0.1, 0.2, 0.5, 0.6],
        "query_box": [0.0, 0.0, 1.0, 1.0],
        "scale": 1.5,
        "rotation": 10.0,
        "mirrored": True,
    }
    assert describe.region(region) == (
        "42 keypoints in place: their part x 10%–50%, y 20%–60% is this image's x 0%–100%, y 0%–100% "
        "(scale 1.5, rotation 10.0°, mirrored)"
    )
