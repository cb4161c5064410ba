"""The lookalike engine's second tier (local features with geometric verification) and query
preparation: a competitor's picture cropped to a square, framed in a phone screenshot or laid
over a blurred copy of itself as a story is flagged with the matched region; our own render is
traced back from a crop, a mirror or a screenshot; odd files neither crash nor match everything;
an index built before the tier keeps working and upgrades in place."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image, ImageOps

from estampille.cli import main
from estampille.ledger import Ledger
from estampille.lookalike.engine import feature_thresholds, hash_queries, search_store, verify_hits
from estampille.lookalike.ingest import ingest
from estampille.lookalike.store import ReferenceStore
from estampille.records import Render
from estampille.testing import benchset

from .conftest import DEMO_BRAND, DEMO_WEEK

COMPETITOR = DEMO_BRAND / "competitors" / "boulangerie-doree"
PICTURE = COMPETITOR / "boulangerie-doree-04.jpg"


def _jpeg(image: Image.Image, path, quality: int = 85):
    image.convert("RGB").save(path, "JPEG", quality=quality)
    return path


def _framings(tmp_path) -> dict:
    """How a competitor's post comes back: cropped to a square, screenshotted, reposted as a story."""
    rng = np.random.default_rng(7)
    picture = Image.open(PICTURE).convert("RGB")
    return {
        "square crop": _jpeg(benchset.reframe(picture, 1.0, rng), tmp_path / "square.jpg"),
        "screenshot": _jpeg(benchset.phone_screenshot(picture, rng), tmp_path / "screenshot.jpg"),
        "story": _jpeg(benchset.story(picture, rng), tmp_path / "story.jpg"),
    }


def test_the_check_stage_flags_reframed_screenshotted_and_story_copies_with_the_region(batch_copy, tmp_path):
    from estampille.batch import open_batch
    from estampille.stages import check_lookalikes

    batch = open_batch(batch_copy["brand"], DEMO_WEEK, batch_copy["settings"])
    ledger = Ledger(batch.settings.ledger_url)
    template = next(e.payload for e in ledger.events(kind="render.created") if not e.payload.get("reference"))
    ledger.close()
    renders = []
    for n, path in enumerate(_framings(tmp_path).values()):
        target = batch.run_dir / "renders" / f"img-framing-{n}.png"
        Image.open(path).save(target)
        renders.append(
            Render.model_validate({**template, "image_id": f"img-framing-{n}", "file": f"renders/img-framing-{n}.png"})
        )
    checks = check_lookalikes(batch, renders)
    batch.ledger.close()
    assert [c.verdict for c in checks] == ["lookalike"] * 3
    for check in checks:
        match = next(m for m in check.matches if m.reference.endswith("boulangerie-doree-04.jpg"))
        assert "features" in match.tier and match.region["inliers"] >= 16
        x0, y0, x1, y1 = match.region["reference_box"]
        assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1 and (x1 - x0) * (y1 - y0) >= feature_thresholds().min_coverage
        evidence = sorted((batch.run_dir / "evidence").glob(f"{check.image_id}-*.png"))
        assert evidence and Image.open(evidence[0]).width == 652  # render | reference, with the region
    # The story's picture sits in the middle third of the 9:16 frame: the region says so.
    story = next(m for m in checks[2].matches if m.reference.endswith("boulangerie-doree-04.jpg"))
    assert 0.25 < story.region["query_box"][1] and story.region["query_box"][3] < 0.75


def test_check_json_names_the_picture_the_tier_and_the_region_and_nothing_for_an_unrelated_photo(tmp_path, capsys):
    index = tmp_path / "index"
    assert (
        main(["lookalike", "index", "--index", str(index), "--competitor", "Boulangerie Dorée", str(COMPETITOR)]) == 0
    )
    screenshot = _framings(tmp_path)["screenshot"]
    # (The demo's competitor pictures are made from some of scikit-image's photos; the retina is not one.)
    unrelated = _jpeg(Image.fromarray(__import__("skimage").data.retina()), tmp_path / "unrelated.jpg")
    capsys.readouterr()
    assert main(["lookalike", "check", "--index", str(index), "--json", str(screenshot), str(unrelated)]) == 1
    shot, other = json.loads(capsys.readouterr().out)
    match = next(m for m in shot["matches"] if m["source"].endswith("boulangerie-doree-04.jpg"))
    assert match["tier"] in ("features", "hash+features") and match["inliers"] >= 16
    assert set(match["region"]) >= {"reference_box", "query_box", "inliers", "scale", "rotation", "mirrored"}
    assert other["matches"] == []


def test_audit_traces_a_crop_a_mirror_and_a_screenshot_of_our_own_render(batch_copy, tmp_path, capsys):
    ledger = Ledger(batch_copy["settings"].ledger_url)
    render = next(e.payload for e in ledger.events(kind="render.created") if not e.payload.get("reference"))
    ledger.close()
    image = Image.open(batch_copy["run_dir"] / render["file"]).convert("RGB")
    rng = np.random.default_rng(3)
    files = [
        _jpeg(benchset.crop_sides(image, 0.87, rng), tmp_path / "crop25.jpg", 92),  # 25% of the area gone
        _jpeg(ImageOps.mirror(image), tmp_path / "mirror.jpg", 92),
        _jpeg(benchset.phone_screenshot(image, rng), tmp_path / "screenshot.jpg", 92),
    ]
    capsys.readouterr()
    assert main(["audit", *map(str, files), "--json"]) == 0
    reports = json.loads(capsys.readouterr().out)
    assert [r["record"]["image_id"] for r in reports] == [render["image_id"]] * 3
    assert all(r["ours"]["model"] == "builtin:tiny-sd" for r in reports)
    shot = reports[2]["record"]
    assert shot["found_by"].startswith("local features") and shot["region"]["inliers"] >= 16


def test_an_untraced_file_names_the_nearest_renders(batch_copy, tmp_path, capsys):
    unrelated = _jpeg(Image.fromarray(__import__("skimage").data.coffee()), tmp_path / "coffee.jpg")
    capsys.readouterr()
    assert main(["audit", str(unrelated), "--json"]) == 1
    [report] = json.loads(capsys.readouterr().out)
    assert report["record"] is None and len(report["candidates"]) == 3
    assert {"image_id", "phash", "dhash", "thresholds"} <= set(report["candidates"][0])


def _odd_files(folder):
    folder.mkdir()
    Image.new("RGB", (1, 1), (10, 20, 30)).save(folder / "pixel.png")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (100, 20000, 3), dtype=np.uint8)).save(
        folder / "strip.png"
    )
    Image.new("RGB", (640, 480), (200, 180, 150)).save(folder / "flat.jpg")
    Image.open(PICTURE).convert("CMYK").save(folder / "cmyk.jpg")
    Image.fromarray(np.asarray(Image.open(PICTURE).convert("L"), dtype=np.uint16) * 257).save(folder / "deep.png")
    frames = [Image.open(PICTURE).convert("P"), ImageOps.mirror(Image.open(PICTURE)).convert("P")]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:], duration=100)
    rgba = Image.open(PICTURE).convert("RGBA")
    rgba.putalpha(128)
    rgba.save(folder / "alpha.png")
    return sorted(folder.iterdir())


def test_odd_inputs_neither_crash_ingest_nor_match_everything(tmp_path):
    odd = _odd_files(tmp_path / "odd")
    store = ReferenceStore(tmp_path / "index")
    report = ingest(store, [*odd, COMPETITOR], "mixed", workers=1)
    assert report.added == len(odd) + len(list(COMPETITOR.glob("*.jpg"))) and not report.skipped
    queries, errors = hash_queries(odd)
    assert errors == [None] * len(odd)
    hits = search_store(store, queries)
    # What is flagged: every candidate is verified on its pixels first. The demo's pictures share a drawn
    # loaf, which the feature tier may propose (many keypoints of the same shape) and verification drops.
    flagged = [h for h, v in verify_hits(store, queries, hits) if v.blocking]
    described = store.describe({h.reference_id for h in hits})
    same_picture = {str(p.absolute()) for p in odd if p.stem in ("cmyk", "deep", "animated", "alpha")} | {str(PICTURE)}
    for n, path in enumerate(odd):
        sources = {described[h.reference_id]["source"] for h in flagged if h.query == n}
        # An odd file matches itself and, when it is a version of the competitor's picture, that
        # picture's other versions; never the rest of the index.
        allowed = {str(path.absolute())} | (same_picture if str(path.absolute()) in same_picture else set())
        assert sources <= allowed, (path.name, sources - allowed)
        # A flat or tiny file is not even a candidate for anything but itself.
        if path.stem in ("pixel", "flat"):
            assert {described[h.reference_id]["source"] for h in hits if h.query == n} <= allowed
    # A real photograph matches none of the odd references.
    photo, _ = hash_queries([benchset.encode(benchset.real_photos()[0][1])])
    photo_hits = search_store(store, photo)
    matched = store.describe({h.reference_id for h in photo_hits})
    assert not [h for h in photo_hits if "/odd/" in matched[h.reference_id]["source"]]
    store.close()


def test_an_index_built_before_the_feature_tier_keeps_working_and_upgrades_in_place(tmp_path, capsys):
    from estampille.lookalike.hashing import hash_file
    from estampille.lookalike.store import Entry

    store = ReferenceStore(tmp_path / "old-index")
    files = sorted(COMPETITOR.glob("*.jpg"))
    store.add(
        [Entry(str(p), "Boulangerie Dorée", str(n)) for n, p in enumerate(files)],
        [hash_file(p.read_bytes()) for p in files],
    )  # no features: as before this tier
    assert store.shards_without_features()
    resized = _jpeg(Image.open(PICTURE).resize((320, 240)), tmp_path / "resized.jpg")
    screenshot = _framings(tmp_path)["screenshot"]
    queries, _ = hash_queries([resized, screenshot])
    before = search_store(store, queries)
    assert {h.query for h in before} >= {0} and all(h.tier == "hash" for h in before)  # the hash tier works
    store.close()
    assert main(["lookalike", "index", "--index", str(tmp_path / "old-index"), "--upgrade"]) == 0
    store = ReferenceStore(tmp_path / "old-index")
    assert store.shards_without_features() == []
    after = search_store(store, queries)
    found = store.describe({h.reference_id for h in after if h.query == 1})
    assert any(v["source"].endswith("boulangerie-doree-04.jpg") for v in found.values())
    assert any("features" in h.tier for h in after if h.query == 1)
    store.close()


def test_dask_workers_give_the_same_two_tier_hits(tmp_path, monkeypatch):
    from dask.distributed import Client, LocalCluster

    from estampille.lookalike.distributed import search_on_dask

    _small_large_shards(monkeypatch)  # workers search lists filed on the index's vocabulary
    store = ReferenceStore(tmp_path / "index")
    ingest(store, [COMPETITOR], "Boulangerie Dorée", workers=1)
    ingest(store, [DEMO_BRAND / "competitors" / "le-fournil-express"], "Le Fournil Express", workers=1)
    assert store.vocabulary() is not None
    queries, _ = hash_queries(list(_framings(tmp_path).values()))
    here = search_store(store, queries)
    with (
        LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        there = search_on_dask(client, store.folder, queries).hits
    store.close()
    assert any("features" in h.tier for h in here)
    assert [(h.query, h.reference_id, h.tier, h.distances) for h in here] == [
        (h.query, h.reference_id, h.tier, h.distances) for h in there
    ]


def test_a_fit_turned_past_a_reposts_range_is_not_a_match(tmp_path):
    """The feature tier accepts fits turned by up to 30°: a copy turned by 20° is matched, one
    turned by 120° is not (a trade: such fits were two unrelated pictures lining up, seen against a
    third-party photo's phone screenshot; quarter turns are the hash tier's --rotations)."""
    store = ReferenceStore(tmp_path / "index")
    ingest(store, [COMPETITOR], "Boulangerie Dorée", workers=1)
    picture = Image.open(PICTURE).convert("RGB")
    turned = {
        angle: _jpeg(
            picture.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor="white"),
            tmp_path / f"turned-{angle}.jpg",
        )
        for angle in (20, 120)
    }
    queries, _ = hash_queries(list(turned.values()))
    found = store.describe({h.reference_id for h in search_store(store, queries)})
    by_features = {
        h.query
        for h in search_store(store, queries)
        if "features" in h.tier and found[h.reference_id]["source"].endswith(PICTURE.name)
    }
    store.close()
    assert by_features == {0}


def test_a_collage_tile_is_caught_by_the_hash_tier_through_the_gutters(tmp_path):
    """A competitor's picture as one tile of a 2x2 collage (white gutters, as collage apps lay
    them out): query preparation splits the collage along its gutters and hashes each tile, so the
    fast tier finds it; an unrelated photo's collage of other photos finds nothing."""
    from estampille.lookalike.query_prep import content_regions

    store = ReferenceStore(tmp_path / "index")
    ingest(store, [COMPETITOR], "Boulangerie Dorée", workers=1)
    import skimage.data as photos

    others = [Image.fromarray(p()).convert("RGB") for p in (photos.retina, photos.camera, photos.immunohistochemistry)]
    picture = Image.open(PICTURE).convert("RGB")
    rng = np.random.default_rng(5)
    with_tile = _jpeg(benchset.collage(picture, others, rng), tmp_path / "collage.jpg")
    without = _jpeg(benchset.collage(others[0], others, rng), tmp_path / "other-collage.jpg")
    tiles = content_regions(Image.open(with_tile))
    # The four tiles (the retina has black margins of its own: its tile is trimmed to the picture).
    assert sum(1 for x0, y0, x1, y1 in tiles if 0.1 < (x1 - x0) * (y1 - y0) < 0.3) == 4
    queries, _ = hash_queries([with_tile, without])
    hits = search_store(store, queries)
    found = store.describe({h.reference_id for h in hits})
    store.close()
    [hit] = [h for h in hits if h.query == 0 and found[h.reference_id]["source"].endswith(PICTURE.name)]
    assert "content region" in hit.reasons
    assert [h for h in hits if h.query == 1] == []


def _small_large_shards(monkeypatch) -> None:
    """Shards count as large (filed on the vocabulary) from 500 keypoints: two demo images' worth."""
    from estampille.lookalike import feature_index, store

    monkeypatch.setattr(feature_index, "FLAT_BELOW", 500)
    monkeypatch.setattr(store, "FLAT_BELOW", 500)


def _mirrored_crop(tmp_path):
    picture = Image.open(PICTURE).convert("RGB")
    w, h = picture.size
    crop = picture.crop((int(w * 0.2), int(h * 0.1), int(w * 0.95), int(h * 0.85)))
    return _jpeg(ImageOps.mirror(crop), tmp_path / "mirrored-crop.jpg", 80)


def _found(store, hits) -> set[tuple[int, str, str]]:
    sources = store.describe({h.reference_id for h in hits})
    return {(h.query, h.tier, sources[h.reference_id]["source"].rsplit("/", 1)[-1]) for h in hits}


def _flagged(store, queries, hits) -> set[tuple[int, str, str]]:
    return _found(store, [h for h, v in verify_hits(store, queries, hits) if v.blocking])


def test_large_shards_share_one_vocabulary_and_find_what_exact_search_finds(tmp_path, monkeypatch):
    """The first large shard trains the index's vocabulary; later ones are filed on the same words,
    and one assignment of the query's keypoints serves them all."""
    queries, _ = hash_queries([*_framings(tmp_path).values(), _mirrored_crop(tmp_path)])
    exact = ReferenceStore(tmp_path / "exact")
    ingest(exact, [COMPETITOR], "Boulangerie Dorée", workers=1)
    assert exact.vocabulary() is None  # a small index stays exact
    expected = _flagged(exact, queries, search_store(exact, queries))
    exact.close()

    _small_large_shards(monkeypatch)
    store = ReferenceStore(tmp_path / "index")
    ingest(store, [COMPETITOR], "Boulangerie Dorée", workers=1)
    ingest(store, [DEMO_BRAND / "competitors" / "le-fournil-express"], "Le Fournil Express", workers=1)
    vocabulary = store.vocabulary()
    assert vocabulary is not None and (store.folder / "vocabulary.fbin").is_file()
    metas = [json.loads(p.read_text()) for p in sorted(store.folder.glob("shards/*/meta.json"))]
    assert len(metas) == 2 and all(m["vocabulary"] == vocabulary.digest for m in metas)
    found = _flagged(store, queries, search_store(store, queries))
    # Every copy of the picture exact search flags, the vocabulary flags too (a picture that only shares a
    # drawn loaf with it, flagged as a derived part by one search, may be missed by the other).
    assert found >= {(q, tier, name) for q, tier, name in expected if name == PICTURE.name}
    assert (3, "features", PICTURE.name) in found  # the mirrored crop
    store.close()


def test_shards_with_an_ivf_of_their_own_are_filed_on_the_vocabulary_by_upgrade_without_their_files(
    tmp_path, monkeypatch
):
    """An index from before the shared vocabulary (each large shard an IVF trained on itself) is
    searched as it is, then `--upgrade` files its keypoints on one vocabulary from the descriptors
    the shards hold: the pictures may be gone. A vocabulary lost or trained again since is refused
    with the command that repairs it."""
    import shutil

    import faiss
    import pytest

    from estampille.lookalike.feature_index import descriptors_of, index_of
    from estampille.lookalike.store import IndexUnusable

    _small_large_shards(monkeypatch)
    pictures = tmp_path / "pictures"
    shutil.copytree(COMPETITOR, pictures)
    store = ReferenceStore(tmp_path / "index")
    ingest(store, [pictures], "Boulangerie Dorée", workers=1)
    shard = store.folder / "shards" / "000001"
    # Back to the earlier layout: the same keypoints in an IVF trained on the shard itself, no vocabulary.
    own = index_of(*descriptors_of(store.load_features(1).index))
    assert isinstance(own, faiss.IndexBinaryIVF)
    faiss.write_index_binary(own, str(shard / "features.fbin"))
    meta = json.loads((shard / "meta.json").read_text())
    del meta["vocabulary"]
    (shard / "meta.json").write_text(json.dumps(meta))
    (store.folder / "vocabulary.fbin").unlink()
    store.close()

    queries, _ = hash_queries([_mirrored_crop(tmp_path)])
    store = ReferenceStore(tmp_path / "index")
    assert store.vocabulary() is None and store.shards_to_refile() == [1]
    hits = search_store(store, queries)
    assert (0, "features", "boulangerie-doree-04.jpg") in _found(store, hits)
    assert (0, "features", "boulangerie-doree-04.jpg") in _flagged(store, queries, hits)
    store.close()

    shutil.rmtree(pictures)  # filing reads the shard's descriptors, not the pictures
    assert main(["lookalike", "index", "--index", str(store.folder), "--upgrade"]) == 0
    store = ReferenceStore(tmp_path / "index")
    vocabulary = store.vocabulary()
    assert vocabulary is not None and json.loads((shard / "meta.json").read_text())["vocabulary"] == vocabulary.digest
    assert store.shards_to_refile() == []
    # Both searches are approximate (inverted lists, 8 neighbours a keypoint): both flag the picture copied.
    # (The demo's pictures share drawn loaves: either may also flag another picture with the same loaf.)
    assert (0, "features", "boulangerie-doree-04.jpg") in _flagged(store, queries, search_store(store, queries))
    store.close()

    def refused_then_repaired_by_upgrade() -> None:
        store = ReferenceStore(tmp_path / "index")
        with pytest.raises(IndexUnusable, match="--upgrade"):
            search_store(store, queries)
        store.close()
        assert main(["lookalike", "index", "--index", str(store.folder), "--upgrade"]) == 0
        store = ReferenceStore(tmp_path / "index")
        assert (0, "features", "boulangerie-doree-04.jpg") in _flagged(store, queries, search_store(store, queries))
        store.close()

    (store.folder / "vocabulary.fbin").unlink()
    refused_then_repaired_by_upgrade()
    # A crash between a shard's new lists and its meta.json: refused, then filed again by --upgrade.
    meta = json.loads((shard / "meta.json").read_text())
    del meta["vocabulary"]
    (shard / "meta.json").write_text(json.dumps(meta))
    refused_then_repaired_by_upgrade()


def test_an_index_grown_past_its_vocabulary_says_so_and_upgrade_trains_a_larger_one(tmp_path, monkeypatch, capsys):
    """The first large shard trains as many words as its keypoints allow; once the index holds enough
    for four times as many, `lookalike index` says so and `--upgrade` trains a larger vocabulary and
    files every shard on it. (Few keypoints per word stand in for a grown index.)"""
    from estampille.lookalike import vocabulary

    _small_large_shards(monkeypatch)
    monkeypatch.setattr(vocabulary, "MIN_WORDS", 16)
    folder = tmp_path / "index"
    assert main(["lookalike", "index", str(COMPETITOR), "--competitor", "B", "--index", str(folder)]) == 0
    store = ReferenceStore(folder)
    first = store.vocabulary()
    assert first is not None and not store.vocabulary_outgrown()
    store.close()

    monkeypatch.setattr(vocabulary, "SAMPLES_PER_WORD", 1)  # the same keypoints now warrant 16 times the words
    other = DEMO_BRAND / "competitors" / "le-fournil-express"
    capsys.readouterr()
    assert main(["lookalike", "index", str(other), "--competitor", "F", "--index", str(folder)]) == 0
    assert "--upgrade" in capsys.readouterr().err
    assert main(["lookalike", "index", "--index", str(folder), "--upgrade"]) == 0
    store = ReferenceStore(folder)
    larger = store.vocabulary()
    assert larger is not None and len(larger) >= 4 * len(first) and not store.vocabulary_outgrown()
    assert {json.loads(p.read_text())["vocabulary"] for p in folder.glob("shards/*/meta.json")} == {larger.digest}
    queries, _ = hash_queries([_mirrored_crop(tmp_path)])
    assert (0, "features", "boulangerie-doree-04.jpg") in _found(store, search_store(store, queries))
    store.close()


def test_merged_lists_find_in_each_shard_what_its_own_lists_find(tmp_path, monkeypatch):
    """Ingest merges the shards' keypoint lists by word; a search through them gives the hits a
    search of every shard's own lists gives. A shard added without merging, or whose lists changed
    since, is searched through its own lists; a damaged merge is ignored and made again. The lists
    are read in windows and the queries scanned in chunks (here small, so both take many passes)."""
    import shutil

    from estampille.lookalike import merged_lists
    from estampille.lookalike.feature_index import NEIGHBOURS, query_descriptors

    _small_large_shards(monkeypatch)
    monkeypatch.setattr(merged_lists, "WINDOW_CODES", 500)
    monkeypatch.setattr(merged_lists, "RESIDENT_BELOW", 0)  # every search read window by window
    monkeypatch.setattr(merged_lists, "SCAN_BYTES", 6 * NEIGHBOURS * 2 * 600)  # chunks of 600 descriptors, 2 shards
    store = ReferenceStore(tmp_path / "index")
    ingest(store, [COMPETITOR], "Boulangerie Dorée", workers=1)
    assert not (store.folder / "lists").exists()  # one shard: nothing to merge
    ingest(store, [DEMO_BRAND / "competitors" / "le-fournil-express"], "Le Fournil Express", workers=1)
    merged = store.merged_lists()
    assert merged is not None and merged[1] == {1, 2}

    queries, _ = hash_queries([*_framings(tmp_path).values(), _mirrored_crop(tmp_path)])
    descriptors = query_descriptors([q.features for q in queries])[0]
    assert len(merged[0]._windows()) >= 10 and len(descriptors) >= 4 * 600
    probes = store.vocabulary().probes(descriptors)
    thresholds = feature_thresholds()
    near = merged[0].nearest(descriptors, probes, thresholds.max_hamming, {1, 2})
    ends = np.append(np.arange(250, len(descriptors), 250), len(descriptors))
    chunks = list(merged[0].nearest_in_chunks(descriptors, probes, thresholds.max_hamming, {1, 2}, ends))
    bounds = [(start, stop) for start, stop, _ in chunks]  # 600 at most, ending where a query does
    assert bounds == [(0, 500), (500, 1000), (1000, 1500), (1500, 2000), (2000, 2500), (2500, len(descriptors))]
    for number in (1, 2):  # chunk by chunk, the same
        assert np.array_equal(np.concatenate([c[2][number].found for c in chunks]), near[number].found)
        assert np.array_equal(np.concatenate([c[2][number].descriptor for c in chunks]), near[number].descriptor)
    for number in (1, 2):  # each shard's nearest within the radius, as its own k-nearest search finds them
        index = store.load_features(number).index
        index.nprobe = probes.words.shape[1]
        distances, found = index.search_preassigned(descriptors, NEIGHBOURS, probes.words, probes.distances)
        keep = (found >= 0) & (distances <= thresholds.max_hamming)
        assert np.array_equal(near[number].descriptor, np.nonzero(keep)[0])
        assert np.array_equal(near[number].distance, distances[keep])
        # The same keypoints, but for which of two equally near ones is kept (faiss keeps the first seen).
        nearest = keep[:, 0] & (distances[:, 0] < distances[:, 1])
        first = np.flatnonzero(np.nonzero(keep)[1] == 0)
        assert np.array_equal(near[number].found[first][nearest[keep[:, 0]]], found[nearest, 0])
    # A search of a few renders maps the lists whole and keeps them so: the same answers.
    assert merged[0]._resident is None
    monkeypatch.setattr(merged_lists, "RESIDENT_BELOW", len(descriptors))
    resident = merged[0].nearest(descriptors, probes, thresholds.max_hamming, {1, 2})
    assert merged[0]._resident is not None
    for number in (1, 2):
        assert all(np.array_equal(getattr(resident[number], k), getattr(near[number], k)) for k in merged_lists._FIELDS)
    monkeypatch.setattr(merged_lists, "RESIDENT_BELOW", 0)

    def copies_flagged() -> set[tuple[int, str, str]]:
        """The copies of the picture flagged: a picture that only shares a drawn loaf with it is a
        borderline derived part, flagged or not by which of keypoints equally near at the 8th place is
        kept (merged lists keep the lowest id, faiss the first seen)."""
        flagged = _flagged(store, queries, search_store(store, queries))
        return {(q, tier, name) for q, tier, name in flagged if PICTURE.stem in name}

    with_merge = copies_flagged()
    assert (3, "features", PICTURE.name) in with_merge  # the mirrored crop
    shutil.rmtree(store.folder / "lists")
    assert store.merged_lists() is not None  # the store still holds the merge it opened...
    assert copies_flagged() == with_merge  # ...and reads it, deleted (as another process merging again does)
    store.close()

    store = ReferenceStore(tmp_path / "index")
    assert store.merged_lists() is None
    # Every shard through its own lists flags the same copies.
    assert copies_flagged() == with_merge
    # A shard added without merging is searched through its own lists beside the merged ones.
    store.merge_lists()
    third = tmp_path / "third"
    third.mkdir()
    for path in [PICTURE, *sorted((DEMO_BRAND / "competitors" / "le-fournil-express").glob("*.jpg"))[:2]]:
        _jpeg(ImageOps.mirror(Image.open(path)), third / f"mirrored-{path.name}")
    ingest(store, [third], "Third", workers=1, merge=False)
    assert store.merged_lists()[1] == {1, 2}
    beside = copies_flagged()
    assert with_merge < beside  # the mirrored copy of the picture in the third folder is flagged too
    assert store.merge_lists() > 0 and store.merged_lists()[1] == {1, 2, 3}
    assert store.merge_lists() == 0  # already current
    assert copies_flagged() == beside
    store.close()

    (tmp_path / "index" / "lists" / "offsets.npy").unlink()  # a damaged merge: ignored, then made again
    store = ReferenceStore(tmp_path / "index")
    assert store.merged_lists() is None and copies_flagged() == beside
    assert store.merge_lists() > 0 and copies_flagged() == beside
    store.close()


def test_the_merged_scan_keeps_exactly_the_nearest_by_distance_then_lowest_id(tmp_path, monkeypatch):
    """The compiled scan of the merged lists against a plain numpy evaluation: for each descriptor and
    each shard searched, the NEIGHBOURS nearest codes within the radius in its probed words, ties at
    any place broken by the lowest id. Codes are a few bits from a handful of bases, so distances tie
    often and a slot's kept list tightens while a run is read (what the scan's bounds rely on); read
    whole and window by window, on one and two threads."""
    import json

    from estampille.lookalike import merged_lists
    from estampille.lookalike.feature_index import NEIGHBOURS, set_search_threads
    from estampille.lookalike.vocabulary import Probes

    rng = np.random.default_rng(3)
    words, radius, shards = 40, 12, [4, 9, 17, 21]
    bases = rng.integers(0, 2**63, size=(3, 4), dtype=np.uint64)

    def near_bases(n: int) -> np.ndarray:
        codes = bases[rng.integers(0, len(bases), n)].copy()
        for _ in range(3):  # up to 3 bits flipped: many codes at the same distance
            bit = rng.integers(0, 256, n)
            codes[np.arange(n), bit // 64] ^= np.left_shift(np.uint64(1), (bit % 64).astype(np.uint64))
        return codes

    sizes = rng.integers(0, 100, words)
    folder = tmp_path / merged_lists.FOLDER
    folder.mkdir()
    total = int(sizes.sum())
    codes, slots = near_bases(total), rng.integers(0, len(shards), total).astype(np.uint16)
    ids = rng.permutation(10 * total)[:total].astype(np.uint32)
    for name, array in {"codes": codes, "ids": ids, "slots": slots, "offsets": np.r_[0, np.cumsum(sizes)]}.items():
        np.save(folder / f"{name}.npy", array)
    (folder / "meta.json").write_text(json.dumps({"vocabulary": "v", "shards": shards, "stamps": [[0, 0]] * 4}))
    lists = merged_lists.MergedLists.load(tmp_path)
    descriptors = near_bases(50).view(np.uint8)
    probed = np.stack([rng.choice(words, 5, replace=False) for _ in range(len(descriptors))])
    probed[::7, -1] = -1  # a word the vocabulary did not find
    probes = Probes("v", np.zeros(probed.shape, np.int32), probed)
    searched = {4, 17, 21}

    distance = np.unpackbits(descriptors[:, None, :] ^ codes.view(np.uint8)[None], axis=2).sum(axis=2)
    offsets = np.r_[0, np.cumsum(sizes)]
    cut_at_a_tie = 0  # (descriptor, shard) whose last kept code ties with the first left out
    for number in searched:
        expected = {k: [] for k in merged_lists._FIELDS}
        for q in range(len(descriptors)):
            rows = np.concatenate([np.arange(offsets[w], offsets[w + 1]) for w in probed[q] if w >= 0])
            rows = rows[(slots[rows] == shards.index(number)) & (distance[q, rows] <= radius)]
            rows = rows[np.lexsort((ids[rows], distance[q, rows]))]
            cut_at_a_tie += (
                len(rows) > NEIGHBOURS and distance[q, rows[NEIGHBOURS - 1]] == distance[q, rows[NEIGHBOURS]]
            )
            rows = rows[:NEIGHBOURS]
            expected["descriptor"] += [q] * len(rows)
            expected["found"] += ids[rows].tolist()
            expected["distance"] += distance[q, rows].tolist()
        for threads in (1, 2):
            set_search_threads(threads)
            for whole in (True, False):
                monkeypatch.setattr(merged_lists, "RESIDENT_BELOW", 10**6 if whole else 0)
                monkeypatch.setattr(merged_lists, "WINDOW_CODES", 10**9 if whole else 100)
                found = lists.nearest(descriptors, probes, radius, searched)[number]
                for k in merged_lists._FIELDS:
                    assert getattr(found, k).tolist() == expected[k], (number, threads, whole, k)
    assert len(lists._windows()) > 5 and cut_at_a_tie > 50
    set_search_threads()
    lists.close()


def test_a_full_disk_while_merging_loses_nothing_and_says_so(tmp_path, monkeypatch, capsys):
    """The merge reserves its files' space first, so a full disk is an error it reports, not a crash:
    the images are indexed, nothing half-written is left, every shard is searched through its own
    lists, and the next `lookalike index` merges them."""
    import errno
    import os

    from estampille.lookalike import merged_lists

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    _small_large_shards(monkeypatch)
    folder = tmp_path / "index"
    assert main(["lookalike", "index", str(COMPETITOR), "--competitor", "B", "--index", str(folder)]) == 0
    monkeypatch.setattr(merged_lists.os, "posix_fallocate", full)
    other = DEMO_BRAND / "competitors" / "le-fournil-express"
    capsys.readouterr()
    assert main(["lookalike", "index", str(other), "--competitor", "F", "--index", str(folder)]) == 0
    assert "keypoint lists not merged (No space left on device)" in capsys.readouterr().err
    assert not list(folder.glob(".lists-*")) and not (folder / "lists").exists()
    store = ReferenceStore(folder)
    assert store.count() == len(list(COMPETITOR.glob("*.jpg"))) + len(list(other.glob("*.jpg")))
    queries, _ = hash_queries([_mirrored_crop(tmp_path)])
    assert (0, "features", "boulangerie-doree-04.jpg") in _found(store, search_store(store, queries))
    store.close()
    monkeypatch.undo()
    _small_large_shards(monkeypatch)
    third = tmp_path / "third"
    third.mkdir()
    _jpeg(Image.open(PICTURE), third / "again.jpg")
    _jpeg(ImageOps.mirror(Image.open(PICTURE)), third / "mirrored.jpg")
    assert main(["lookalike", "index", str(third), "--competitor", "T", "--index", str(folder)]) == 0
    store = ReferenceStore(folder)
    assert store.merged_lists() is not None and {1, 2} <= store.merged_lists()[1]
    store.close()


def _copies_and_unrelated(tmp_path):
    """The competitor pictures in one exact shard, and as queries their framings, a mirrored crop and
    three unrelated real photographs: (shard, the queries' features, the shipped thresholds)."""
    from skimage import data as skdata

    from estampille.lookalike.feature_index import FeatureShard
    from estampille.lookalike.features import reference_features

    references = sorted(COMPETITOR.glob("*.jpg")) + sorted(
        (DEMO_BRAND / "competitors" / "le-fournil-express").glob("*.jpg")
    )
    shard = FeatureShard.in_memory([reference_features(p) for p in references])
    unrelated = [
        _jpeg(Image.fromarray(getattr(skdata, n)()), tmp_path / f"{n}.jpg") for n in ("astronaut", "coffee", "chelsea")
    ]
    queries, _ = hash_queries([*_framings(tmp_path).values(), _mirrored_crop(tmp_path), *unrelated])
    features = [q.features for q in queries]
    thresholds = feature_thresholds()
    return shard, features, thresholds


def test_candidates_that_cannot_reach_the_inlier_floor_are_not_fitted_and_nothing_else_changes(tmp_path, monkeypatch):
    """A reference voted for by fewer distinct keypoints of its own than the inlier floor cannot pass
    RANSAC's distinct-keypoint check, so it is not fitted: the matches are those of fitting every
    candidate over the vote floor, on copies and unrelated real photographs alike."""
    from estampille.lookalike import feature_index

    shard, features, thresholds = _copies_and_unrelated(tmp_path)

    skipped = []
    real = feature_index._candidates

    def recorded(ids, min_inliers):
        rows, votes, can_pass, order, bounds = real(ids, min_inliers)
        skipped.extend(rows[(votes >= thresholds.min_votes) & ~can_pass].tolist())
        return rows, votes, can_pass, order, bounds

    def fit_all(ids, min_inliers):
        rows, votes, can_pass, order, bounds = real(ids, min_inliers)
        return rows, votes, np.ones_like(can_pass), order, bounds

    monkeypatch.setattr(feature_index, "_candidates", recorded)
    pruned = shard.search(features, thresholds)
    assert skipped  # voted over the floor, but by too few distinct keypoints: not fitted
    monkeypatch.setattr(feature_index, "_candidates", fit_all)
    every = shard.search(features, thresholds)
    assert [(q, row, m.inliers, m.transform) for q, row, m in pruned] == [
        (q, row, m.inliers, m.transform) for q, row, m in every
    ]
    assert {q for q, _, _ in pruned} >= {0, 1, 2, 3}  # every copy still matched


def test_votes_are_grouped_in_the_order_of_one_stable_sort_whichever_sort_does_it():
    """Two radix sorts (keypoint, then row) order a shard's votes as one stable sort of their ids
    does, repeated votes included, at every size and past the rows 16 bits hold."""
    from estampille.lookalike.feature_index import RADIX_FROM, STRIDE, _stable_order

    rng = np.random.default_rng(11)
    for size in (0, 1, RADIX_FROM - 1, RADIX_FROM, 12_000):
        for rows in (50, 60_000, 1 << 17):
            ids = rng.integers(0, rows, size) * STRIDE + rng.integers(0, STRIDE, size)
            ids = np.concatenate([ids, rng.choice(ids, size // 3)]) if size else ids  # one keypoint voted for again
            assert np.array_equal(_stable_order(ids), np.argsort(ids, kind="stable")), (size, rows)


def test_ransac_draws_only_what_the_smallest_passing_fit_needs_and_the_matches_are_those_of_2000(tmp_path, monkeypatch):
    """A candidate of unrelated keypoints ran RANSAC's 2,000 draws; the cap (enough draws to find the
    smallest consensus that could pass, with RANSAC's own confidence) gives the same matches, on
    copies and unrelated real photographs alike."""
    from estampille.lookalike import features as feature_module
    from estampille.lookalike.features import MAX_DRAWS, ransac_draws

    assert ransac_draws(60, 16) < 100 and ransac_draws(16, 16) == 1 and ransac_draws(10_000, 16) == MAX_DRAWS
    shard, features, thresholds = _copies_and_unrelated(tmp_path)
    draws: list[int] = []
    real = feature_module.ransac_draws
    monkeypatch.setattr(feature_module, "ransac_draws", lambda n, m: draws.append(real(n, m)) or draws[-1])
    capped = shard.search(features, thresholds)
    assert draws and min(draws) < MAX_DRAWS
    monkeypatch.setattr(feature_module, "ransac_draws", lambda n, m: MAX_DRAWS)
    every = shard.search(features, thresholds)
    assert [(q, row, m.inliers, m.transform) for q, row, m in capped] == [
        (q, row, m.inliers, m.transform) for q, row, m in every
    ]
    assert {q for q, _, _ in capped} >= {0, 1, 2, 3}
