"""Perceptual fingerprints (imagehash bits) and the reference index."""

from __future__ import annotations

import io

import imagehash
import pytest
from PIL import Image

from estampille.lookalike.fingerprint import fingerprints
from estampille.lookalike.index import index_folders, verdict_for

from .conftest import DEMO_BRAND

COMPETITOR = DEMO_BRAND / "competitors" / "boulangerie-doree"


def _jpeg(image, quality=70):
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue()))


def test_fingerprints_are_imagehash_bits():
    image = Image.open(COMPETITOR / "boulangerie-doree-01.jpg")
    hashes = fingerprints(image)
    assert hashes["phash"] == str(imagehash.phash(image)) and hashes["dhash"] == str(imagehash.dhash(image))


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    return index_folders({"Boulangerie Dorée": COMPETITOR}, tmp_path_factory.mktemp("i") / "cache.json")


def test_resized_recompressed_copy_of_a_competitor_image_is_a_lookalike(index):
    original = Image.open(COMPETITOR / "boulangerie-doree-03.jpg")
    copy = _jpeg(original.resize((original.width // 2, original.height // 2)), quality=60)
    hits = index.search(fingerprints(copy))
    best = min(hits, key=lambda h: h[1]["phash"])
    assert best[0].reference.endswith("boulangerie-doree-03.jpg") and verdict_for(best[1]) == "lookalike"


def test_unrelated_image_matches_nothing(index):
    noise = Image.effect_noise((256, 256), 80).convert("RGB")
    assert all(verdict_for(d) != "lookalike" for _, d in index.search(fingerprints(noise)))


def test_bad_files_are_skipped_with_a_reason_and_the_rest_indexed(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    Image.new("RGB", (64, 48), "orange").save(folder / "good.png")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "fake.png").write_bytes(b"this is not an image")
    good = (COMPETITOR / "boulangerie-doree-00.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(good[: len(good) // 3])
    index = index_folders({"x": folder}, tmp_path / "cache.json")
    assert [r.reference.rsplit("/", 1)[1] for r in index.references] == ["good.png"]
    reasons = {path.rsplit("/", 1)[1]: reason for path, reason in index.skipped}
    assert reasons["empty.jpg"] == "empty file"
    assert "not a readable image" in reasons["fake.png"]
    assert "truncated" in reasons["truncated.jpg"]


def test_decompression_bomb_is_skipped(tmp_path):
    folder = tmp_path / "bomb"
    folder.mkdir()
    Image.new("1", (12000, 12000)).save(folder / "bomb.png", optimize=True)
    index = index_folders({"x": folder}, tmp_path / "cache.json")
    assert not index.references and "too large" in index.skipped[0][1]


def test_cache_is_keyed_by_content_so_unchanged_files_are_not_rehashed(tmp_path, monkeypatch):
    cache = tmp_path / "cache.json"
    first = index_folders({"c": COMPETITOR}, cache)
    import estampille.lookalike.index as module

    monkeypatch.setattr(module, "fingerprints", lambda image: pytest.fail("re-hashed an unchanged file"))
    second = index_folders({"c": COMPETITOR}, cache)
    assert [r.hashes for r in second.references] == [r.hashes for r in first.references]
