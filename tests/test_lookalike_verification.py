"""Verification of lookalike candidates on their pixels (issue 26): two unrelated real photographs
laid out the same way (a subject centred on a dark ground, the layout of every product shot) are
candidates for the hash tier but not a copy: shown as a similar composition, never blocking; a
cropped, mirrored screenshot of a reference is still a blocking copy with its region; an index whose
reference file is gone cannot verify and says so."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter, ImageOps

from estampille.cli import main
from estampille.lookalike.engine import find_lookalikes, hash_queries, search_store
from estampille.lookalike.store import ReferenceStore
from estampille.testing import benchset

# (reference, query): scikit-image photographs whose centred-on-dark layouts are within the hash
# tier's thresholds of each other (pHash 10 and 12 of 15): exactly the false flags of the issue.
LAYOUT_PAIRS = [("coffee", "moon"), ("camera", "motorcycle_left")]


def _photos() -> dict[str, Image.Image]:
    return dict(benchset.real_photos())


def centred_on_dark(photo: Image.Image) -> Image.Image:
    """The photo's middle as a product shot shows a product: a bright subject, its edge falling off
    softly, centred on a dark ground."""
    w, h = photo.size
    cw, ch = int(w * 0.5), int(h * 0.5)
    subject = photo.crop(((w - cw) // 2, (h - ch) // 2, (w + cw) // 2, (h + ch) // 2)).resize((300, 300))
    mask = Image.new("L", (300, 300), 0)
    ImageDraw.Draw(mask).ellipse((20, 20, 280, 280), fill=255)
    canvas = Image.new("RGB", (640, 480), (12, 12, 14))
    canvas.paste(subject, (170, 90), mask.filter(ImageFilter.GaussianBlur(18)))
    return canvas


def _jpeg(image: Image.Image, path, quality: int = 88):
    image.convert("RGB").save(path, "JPEG", quality=quality)
    return path


@pytest.fixture
def layout_index(tmp_path):
    photos = _photos()
    folder = tmp_path / "competitor"
    folder.mkdir()
    for reference, _ in LAYOUT_PAIRS:
        _jpeg(centred_on_dark(photos[reference]), folder / f"{reference}.jpg")
    index = tmp_path / "index"
    assert main(["lookalike", "index", "--index", str(index), "--competitor", "Rival", str(folder)]) == 0
    return index, folder, photos


def test_an_unrelated_photo_with_the_same_layout_is_a_similar_composition_not_a_flag(layout_index, tmp_path, capsys):
    index, _, photos = layout_index
    queries = [_jpeg(centred_on_dark(photos[query]), tmp_path / f"query-{query}.jpg") for _, query in LAYOUT_PAIRS]
    # The hash tier does propose them: without verification each would be flagged.
    store = ReferenceStore(index)
    prepared, _ = hash_queries(queries)
    candidates = search_store(store, prepared)
    assert {h.query for h in candidates if h.tier != "features"} == {0, 1}
    found, errors = find_lookalikes(store, queries)
    store.close()
    assert errors == [None, None]
    assert found and all(not m.blocking and m.verification.grade == "similar" for m in found)
    assert all("similar composition" in m.verification.reason for m in found)
    # Through the command: exit 0 (nothing blocking), the match shown with its grade and why.
    capsys.readouterr()
    assert main(["lookalike", "check", "--index", str(index), "--json", *map(str, queries)]) == 0
    results = json.loads(capsys.readouterr().out)
    for result in results:
        assert result["matches"], "the similar composition is shown, not hidden"
        for m in result["matches"]:
            assert m["verdict"] == "similar" and m["grade"] == "similar" and m["blocking"] is False
            assert {"phash", "pdq"} <= set(m["distances"]) and "agreement" in m["verification"]


def test_a_cropped_mirrored_screenshot_of_a_reference_is_still_a_blocking_copy_with_its_region(
    layout_index, tmp_path, capsys
):
    index, folder, _ = layout_index
    photos = _photos()
    # A real photograph as a competitor posted it, then reposted: cropped, mirrored, screenshotted.
    _jpeg(photos["chelsea"].resize((640, 480)), folder / "chelsea.jpg")
    assert main(["lookalike", "index", "--index", str(index), "--competitor", "Rival", str(folder)]) == 0
    rng = np.random.default_rng(3)
    repost = benchset.phone_screenshot(
        ImageOps.mirror(benchset.crop_sides(photos["chelsea"].resize((640, 480)), 0.78, rng)), rng
    )
    query = _jpeg(repost, tmp_path / "repost.jpg", 80)
    capsys.readouterr()
    assert main(["lookalike", "check", "--index", str(index), "--json", str(query)]) == 1
    (result,) = json.loads(capsys.readouterr().out)
    match = next(m for m in result["matches"] if m["source"].endswith("chelsea.jpg"))
    assert match["verdict"] == "lookalike" and match["blocking"] and match["grade"] in ("copy", "derived")
    assert match["verification"]["agreement"] >= 0.5
    assert match["region"] and match["region"]["mirrored"]
    x0, y0, x1, y1 = match["region"]["query_box"]
    assert y0 > 0.05 and y1 < 0.8  # the picture inside the screenshot, not the whole frame


def test_verification_reads_the_catalog_file_for_an_old_index_and_says_when_it_cannot(layout_index, tmp_path):
    index, folder, photos = layout_index
    # Shards written before thumbnails were stored: remove them, verification falls back on the file.
    for thumbs in index.glob("shards/*/verify*"):
        thumbs.unlink()
    reference = folder / f"{LAYOUT_PAIRS[0][0]}.jpg"
    copy = _jpeg(Image.open(reference).resize((480, 360)), tmp_path / "copy.jpg", 70)
    store = ReferenceStore(index)
    found, _ = find_lookalikes(store, [copy])
    assert any(m.blocking and m.verification.grade == "copy" for m in found)
    reference.unlink()  # the file is gone: the match cannot be verified
    found, _ = find_lookalikes(store, [copy])
    store.close()
    gone = [m for m in found if m.reference["source"] == str(reference.absolute())]
    assert gone and all(m.verification.grade == "unverified" and m.blocking for m in gone)
    assert "lookalike index --upgrade" in gone[0].verification.reason
