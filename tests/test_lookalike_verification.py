"""Verification of lookalike candidates on their pixels (issue 26): two unrelated real photographs
laid out the same way (a subject centred on a dark ground, the layout of every product shot) are
candidates for the former hash rule but not a copy: not proposed by the shipped rule, and shown as a
similar composition, never blocking, when a looser rule proposes them; a
cropped, mirrored screenshot of a reference is still a blocking copy with its region; an index whose
reference file is gone cannot verify and says so."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter, ImageOps

from estampille.cli import main
from estampille.lookalike.engine import find_lookalikes, hash_queries, search_store
from estampille.lookalike.scan import Thresholds
from estampille.lookalike.store import ReferenceStore
from estampille.testing import benchset

# (reference, query): scikit-image photographs whose centred-on-dark layouts were within the hash
# tier's former thresholds of each other (pHash 10 and 12 of 15): exactly the false flags of the issue.
LAYOUT_PAIRS = [("coffee", "moon"), ("camera", "motorcycle_left")]
# The hash rule before issue 26 (any hash near; PDQ <= 256 always holds): what proposed them.
FORMER_RULE = Thresholds(phash=15, window=13, pdq=256)


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
    store = ReferenceStore(index)
    prepared, _ = hash_queries(queries)
    # The shipped rule (pHash and PDQ near under one transform) does not propose them at all ...
    assert not [h for h in search_store(store, prepared) if h.tier != "features"]
    found, errors = find_lookalikes(store, queries)
    assert errors == [None, None] and not [m for m in found if m.blocking]
    # ... and when a looser rule does (the one before issue 26), verification is what keeps them from
    # being flags: each is a candidate, and comes back a similar composition, never blocking.
    assert {h.query for h in search_store(store, prepared, FORMER_RULE) if h.tier != "features"} == {0, 1}
    found, errors = find_lookalikes(store, queries, FORMER_RULE)
    store.close()
    assert found and all(not m.blocking and m.verification.grade == "similar" for m in found)
    assert all("similar composition" in m.verification.reason for m in found)
    assert {m.source for m in found} == {0, 1}
    # Through the command: exit 0 (nothing blocking) and no match listed.
    capsys.readouterr()
    assert main(["lookalike", "check", "--index", str(index), "--json", *map(str, queries)]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["matches"] for r in results] == [[], []]


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


def test_the_check_gives_the_feature_search_the_threads_the_settings_say(layout_index, tmp_path, monkeypatch):
    """ESTAMPILLE_SEARCH_THREADS is read by the settings and handed to the library by the command
    (the library reads no configuration itself)."""
    from estampille.lookalike.feature_index import default_search_threads, search_threads, set_search_threads

    index, folder, _ = layout_index
    monkeypatch.setenv("ESTAMPILLE_SEARCH_THREADS", "1")
    try:
        assert main(["lookalike", "check", "--index", str(index), str(next(folder.glob("*.jpg")))]) == 1
        assert search_threads() == 1
    finally:
        set_search_threads()
    assert search_threads() == default_search_threads()


def test_verification_runs_on_one_blas_thread_and_gives_the_others_back(layout_index, tmp_path, monkeypatch):
    """Verification's small matrix products run on one BLAS thread: OpenBLAS's threads spin after a
    product and took the cores from the next search (bench/RESULTS.md part 8). Whatever the process
    had before is back afterwards, and the copy is still a blocking copy."""
    from threadpoolctl import ThreadpoolController

    from estampille.lookalike import engine

    def blas_threads() -> list[int]:
        return [pool["num_threads"] for pool in ThreadpoolController().select(user_api="blas").info()]

    index, folder, _ = layout_index
    seen: list[list[int]] = []
    real = engine.verify

    def recorded(*args, **kwargs):
        seen.append(blas_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "verify", recorded)
    copy = _jpeg(Image.open(next(folder.glob("*.jpg"))).resize((480, 360)), tmp_path / "copy.jpg", 80)
    store = ReferenceStore(index)
    with ThreadpoolController().limit(limits=2, user_api="blas"):  # as on a machine of 2 cores or more
        before = blas_threads()
        found, _ = find_lookalikes(store, [copy])
        after = blas_threads()
    store.close()
    assert any(m.blocking for m in found)
    assert before and set(before) == {2} and after == before
    assert seen and all(threads == [1] * len(before) for threads in seen)


def test_verification_stops_at_the_first_clear_placement_with_the_verdict_of_trying_them_all(tmp_path, monkeypatch):
    """A copy agrees clearly under the first placement or two: the others (up to 21) are not tried,
    and every verdict, copies and unrelated photographs alike, is the one trying all of them gives."""
    from estampille.lookalike import verify as verification
    from estampille.lookalike.features import reference_thumbnail

    photos = _photos()
    rng = np.random.default_rng(5)
    reference = _jpeg(photos["chelsea"].resize((640, 480)), tmp_path / "reference.jpg")
    thumb = reference_thumbnail(reference)
    original = Image.open(reference).convert("RGB")
    queries = {
        "resized": original.resize((480, 360)),
        "mirrored": ImageOps.mirror(original),
        "cropped": benchset.crop_sides(original, 0.78, rng),
        "screenshot": benchset.phone_screenshot(original, rng),
        **{name: photos[name].convert("RGB") for name in ("coffee", "astronaut", "rocket")},
    }
    tried: list[str] = []
    warp = verification._warp
    monkeypatch.setattr(verification, "_warp", lambda view, matrix: tried.append("") or warp(view, matrix))

    def verdicts() -> dict[str, tuple]:
        found = {}
        for name, image in queries.items():
            tried.clear()
            result = verification.verify(
                verification.QueryView.of(image), thumb, None, True, verification.VerifyThresholds()
            )
            assert result is not None
            found[name] = (result.grade, result.blocking, len(tried))
        return found

    stopping = verdicts()
    monkeypatch.setattr(verification, "CLEAR_CUT", 1.01)  # never clear: every placement is tried
    exhaustive = verdicts()
    assert {n: v[:2] for n, v in stopping.items()} == {n: v[:2] for n, v in exhaustive.items()}
    assert all(stopping[n][1] for n in ("resized", "mirrored"))
    assert not any(stopping[n][1] for n in ("coffee", "astronaut", "rocket"))
    assert stopping["resized"][2] == 1 and stopping["mirrored"][2] == 2  # whole, then whole mirrored
    assert exhaustive["resized"][2] >= 15
