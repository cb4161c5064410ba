"""The lookalike engine: hashes checked against imagehash, the on-disk index (incremental,
parallel, bad files skipped), exact search (crops, mirrors, recolours), Dask scale-out with the
same answers, the CLI, and calibration on a small labelled set."""

from __future__ import annotations

import io
import json
import os
import shutil

import imagehash
import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from estampille.cli import main
from estampille.lookalike import ingest as ingest_module
from estampille.lookalike.engine import calibrated, find_lookalikes, hash_queries, search_store
from estampille.lookalike.fingerprint import fingerprints
from estampille.lookalike.hashing import colour_of, decode, dhash_of, phash_of, shrink
from estampille.lookalike.ingest import ingest
from estampille.lookalike.scan import Thresholds, popcount, scan
from estampille.lookalike.store import ReferenceStore
from estampille.testing import benchset, calibration

from .conftest import DEMO_BRAND, REPO

COMPETITOR = DEMO_BRAND / "competitors" / "boulangerie-doree"
OTHER = DEMO_BRAND / "competitors" / "le-fournil-express"


def jpeg(image: Image.Image, quality: int = 80) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def test_the_fingerprints_a_render_record_keeps_are_those_of_its_pixels(finished_batch):
    """What the audit of a stripped file relies on: each render record's hashes are the hashes of
    its own PNG (computed here by our own hashing, itself checked against imagehash below), far
    from the hashes of the batch's other renders."""
    from estampille.ledger import Ledger

    ledger = Ledger(f"sqlite:///{finished_batch / 'out' / 'ledger.sqlite'}")
    renders = [e.payload for e in ledger.events(kind="render.created")]
    ledger.close()
    own = {}
    for render in renders:
        gray = Image.open(finished_batch / "out" / "brand" / render["slot_id"].split("/")[0] / render["file"]).convert(
            "L"
        )
        own[render["image_id"]] = (phash_of(gray), dhash_of(gray))
        assert render["fingerprints"] == {
            "phash": f"{own[render['image_id']][0]:016x}",
            "dhash": f"{own[render['image_id']][1]:016x}",
        }, render["image_id"]
    for render in renders:
        others = [bits for image_id, bits in own.items() if image_id != render["image_id"]]
        recorded = int(render["fingerprints"]["phash"], 16)
        assert min((recorded ^ p).bit_count() for p, _ in others) > 12  # beyond the audit's trace distance
    assert fingerprints(Image.open(COMPETITOR / "boulangerie-doree-01.jpg")) != fingerprints(
        Image.open(OTHER / sorted(os.listdir(OTHER))[0])
    )


def test_phash_dhash_and_colour_are_imagehash_bits_for_the_same_decoded_pixels():
    files = sorted(COMPETITOR.glob("*.jpg")) + sorted(OTHER.glob("*.jpg")) + [REPO / "docs/screenshots/runs-page.png"]
    for path in files:
        image = decode(path)  # what the pipeline hashes: a reduced decode
        gray = image.convert("L")
        assert f"{phash_of(gray):016x}" == str(imagehash.phash(image)), path
        assert f"{dhash_of(gray):016x}" == str(imagehash.dhash(image)), path
        small = shrink(image, 32)
        assert colour_of(image) == int(str(imagehash.colorhash(small, binbits=3)), 16), path
    assert max(decode(files[0]).size) < 128  # JPEG decoded at a reduced scale (draft)


@pytest.fixture(scope="module")
def competitor_index(tmp_path_factory):
    store = ReferenceStore(tmp_path_factory.mktemp("index"))
    ingest(store, [COMPETITOR], "Boulangerie Dorée", captured="2026-11-01", rights="screenshot, internal use")
    ingest(store, [OTHER], "Le Fournil Express")
    yield store
    store.close()


def hash_queries_from_bytes(blobs):
    """Queries as a check prepares them: both tiers (the hash tier takes near-duplicates, the
    feature tier crops and borders)."""
    from estampille.lookalike.engine import hash_queries

    return hash_queries(blobs)


@pytest.mark.parametrize(
    "copy",
    [
        lambda im: im.resize((im.width // 2, im.height // 2)),
        lambda im: ImageOps.mirror(im),
        lambda im: im.crop((int(im.width * 0.12), int(im.height * 0.1), im.width, im.height)),  # ~20% of the area gone
        lambda im: ImageEnhance.Brightness(ImageOps.mirror(im)).enhance(1.2),
        lambda im: ImageOps.expand(im, im.width // 12, fill="white"),  # a border
        lambda im: im.rotate(4, resample=Image.Resampling.BICUBIC).crop((20, 20, im.width - 20, im.height - 20)),
    ],
    ids=["half-size", "mirror", "crop-20%", "mirror+brighter", "border", "rotated-4°"],
)
def test_copies_of_a_competitor_image_are_found_and_unrelated_images_are_not(competitor_index, copy):
    original = Image.open(COMPETITOR / "boulangerie-doree-05.jpg")
    blobs = [jpeg(copy(original)), jpeg(Image.open(OTHER / "le-fournil-express-00.jpg"))]  # no shared picture
    found, _ = find_lookalikes(competitor_index, blobs)
    flagged = [m for m in found if m.blocking]
    assert "boulangerie-doree-05.jpg" in {m.reference["source"].rsplit("/", 1)[1] for m in flagged if m.source == 0}
    assert all(m.reference["competitor"] == "Le Fournil Express" for m in flagged if m.source == 1)
    first = next(m for m in flagged if m.source == 0 and m.reference["source"].endswith("-05.jpg"))
    assert set(first.hit.distances) == {"phash", "window", "pdq", "dhash", "colour"} and first.hit.reasons
    assert first.reference["captured"] == "2026-11-01"


def test_noise_matches_nothing(competitor_index):
    noise = Image.fromarray(np.random.default_rng(3).integers(0, 255, (300, 400, 3), dtype=np.uint8))
    queries, _ = hash_queries_from_bytes([jpeg(noise)])
    assert search_store(competitor_index, queries) == []


def test_the_scan_is_exact_against_a_plain_numpy_evaluation(monkeypatch):
    """Random hashes, thresholds wide enough for many hits: the compiled scan (pHash first, PDQ for
    the pairs it lets through) returns exactly the pairs a direct evaluation of the rule finds:
    pHash and PDQ both near under one transform of the query."""
    rng = np.random.default_rng(7)
    n, q, v = 5000, 40, 3

    def u(*shape):
        return rng.integers(0, 2**63, shape, dtype=np.int64).view(np.uint64) * np.uint64(2)

    phash, pdq = u(n), u(4, n)
    from estampille.lookalike.scan import QueryArrays

    # Queries near some references in pHash under one transform or another, and in PDQ under others.
    variant_phash = u(q, v)
    variant_phash[:, 0] = phash[:q] ^ np.uint64(0b1011)
    variant_phash[:, 2] = phash[q : 2 * q] ^ np.uint64(0b111)
    variant_pdq = u(q, v, 4)
    variant_pdq[: q // 2, 0] = pdq[:, : q // 2].T ^ np.uint64(0xFF)  # same transform: a match
    variant_pdq[:, 1] = pdq[:, q : 2 * q].T  # another transform than the near pHash: no match
    queries = QueryArrays(variant_phash[:, 0].copy(), variant_phash[:, 1].copy(), u(q, 8), variant_phash, variant_pdq)
    t = Thresholds(phash=24, window=0, pdq=110)
    found = {tuple(p) for p in scan(queries, phash, pdq, t)}
    near_phash = popcount(variant_phash[:, :, None] ^ phash[None, None, :]) <= 24  # (Q, V, N)
    near_pdq = popcount(variant_pdq[:, :, None, :] ^ pdq.T[None, None]).sum(axis=3) <= 110
    expected = {tuple(p) for p in np.argwhere((near_phash & near_pdq).any(axis=1))}
    assert found == expected and len(expected) >= q // 2
    assert not any(r in range(q, 2 * q) for _, r in found if (_, r) not in expected)
    # A block with more hits than its room is scanned again alone: same answer.
    import estampille.lookalike.scan as scan_module

    monkeypatch.setattr(scan_module, "HIT_CAPACITY", 2)
    assert {tuple(p) for p in scan(queries, phash, pdq, t)} == expected


def test_ingest_is_incremental_parallel_and_skips_bad_files_with_reasons(tmp_path, monkeypatch):
    folder = tmp_path / "mixed"
    shutil.copytree(COMPETITOR, folder)
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "fake.png").write_bytes(b"this is not an image")
    good = (COMPETITOR / "boulangerie-doree-00.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(good[: len(good) // 3])
    Image.new("1", (12000, 12000)).save(folder / "bomb.png", optimize=True)
    for n in range(150):  # enough files for the process pool
        (folder / f"extra-{n:03d}.jpg").write_bytes(good)
    store = ReferenceStore(tmp_path / "index")
    seen = []
    report = ingest(store, [folder], "Dorée", workers=2, progress=lambda done, total: seen.append((done, total)))
    assert report.added == 16 + 150 and seen[-1] == (170, 170)
    reasons = {source.rsplit("/", 1)[1]: reason for source, reason in report.skipped}
    assert reasons["empty.jpg"] == "empty file"
    assert "not a readable image" in reasons["fake.png"]
    assert "truncated" in reasons["truncated.jpg"]
    assert "decompression bomb" in reasons["bomb.png"]
    assert len(store.skipped()) == 4

    # Unchanged files are not read again; a changed one is, and replaces its old row.
    monkeypatch.setattr(ingest_module, "hash_file", lambda data: pytest.fail("re-hashed an unchanged file"))
    again = ingest(store, [folder], "Dorée", workers=1)
    assert (again.added, again.unchanged) == (0, 166)
    monkeypatch.undo()
    changed = folder / "boulangerie-doree-03.jpg"
    changed.write_bytes(jpeg(ImageOps.mirror(Image.open(COMPETITOR / "boulangerie-doree-03.jpg")), 60))
    os.utime(changed, ns=(1, 1))
    third = ingest(store, [folder], "Dorée", workers=1)
    assert (third.added, third.replaced) == (1, 1) and store.count() == 166
    queries, _ = hash_queries([COMPETITOR / "boulangerie-doree-03.jpg"])
    hits = search_store(store, queries)
    sources = store.describe({h.reference_id for h in hits})
    assert sum(1 for h in hits if sources[h.reference_id]["source"].endswith("-03.jpg")) == 1  # old row filtered


def test_dask_cluster_of_two_workers_returns_exactly_the_single_process_matches(tmp_path, monkeypatch):
    from dask.distributed import Client, LocalCluster

    from estampille.lookalike.distributed import search_on_dask

    monkeypatch.setattr(ingest_module, "SHARD_SIZE", 6)  # several shards from 32 images
    store = ReferenceStore(tmp_path / "index")
    ingest(store, [COMPETITOR], "Dorée", workers=1)
    ingest(store, [OTHER], "Fournil", workers=1)
    assert len(store.shard_numbers()) >= 6
    copies = [jpeg(ImageOps.mirror(Image.open(p)).resize((300, 225))) for p in sorted(COMPETITOR.glob("*.jpg"))[:6]]
    copies += [
        jpeg(im.crop((im.width // 12, im.height // 12, im.width, im.height)))
        for im in (Image.open(p) for p in sorted(OTHER.glob("*.jpg"))[:6])
    ]
    queries, _ = hash_queries_from_bytes(copies)
    here = search_store(store, queries)
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        there = search_on_dask(client, store.folder, queries)
        workers = {w for w, _ in there.placements}
    assert [(h.query, h.reference_id, h.distances) for h in there.hits] == [
        (h.query, h.reference_id, h.distances) for h in here
    ]
    assert len({h.query for h in here}) >= 8 and len(workers) == 2


def test_cli_check_prints_json_per_file_and_exit_status(tmp_path, capsys):
    index = tmp_path / "index"
    assert (
        main(
            [
                "lookalike",
                "index",
                "--index",
                str(index),
                "--competitor",
                "Boulangerie Dorée",
                "--captured",
                "2026-10-30",
                "--rights",
                "public post",
                str(COMPETITOR),
            ]
        )
        == 0
    )
    copy = tmp_path / "copy.jpg"
    copy.write_bytes(jpeg(ImageOps.mirror(Image.open(COMPETITOR / "boulangerie-doree-07.jpg")), 60))
    clean = tmp_path / "clean.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (200, 200, 3), dtype=np.uint8)).save(clean)
    capsys.readouterr()
    assert main(["lookalike", "check", "--index", str(index), "--json", str(copy), str(clean)]) == 1
    results = json.loads(capsys.readouterr().out)
    assert [r["file"] for r in results] == [str(copy), str(clean)]
    match = results[0]["matches"][0]
    # Today's keys stay; the two-tier engine adds which tier decided and the matched region, and
    # verification the grade, whether it blocks and why.
    assert set(match) == {
        "competitor",
        "source",
        "distances",
        "verdict",
        "captured",
        "rights",
        "tier",
        "reasons",
        "region",
        "inliers",
        "grade",
        "blocking",
        "verification",
    }
    assert match["grade"] == "copy" and match["blocking"] is True
    assert match["competitor"] == "Boulangerie Dorée" and match["source"].endswith("boulangerie-doree-07.jpg")
    assert match["verdict"] == "lookalike" and match["distances"]["phash"] <= calibrated().phash
    assert results[1] == {"file": str(clean), "matches": [], "error": None}
    assert main(["lookalike", "check", "--index", str(index), str(clean)]) == 0
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff garbage")
    capsys.readouterr()
    assert main(["lookalike", "check", "--index", str(index), "--json", str(broken)]) == 2
    assert "not a readable image" in json.loads(capsys.readouterr().out)[0]["error"]
    assert main(["lookalike", "check", "--index", str(tmp_path / "nowhere"), str(clean)]) == 2
    # An index hashed by another pipeline is refused with the fix, not searched with mismatched bits.
    meta = next((index / "shards").iterdir()) / "meta.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "pipeline": "est0:older"}))
    capsys.readouterr()
    assert main(["lookalike", "check", "--index", str(index), str(clean)]) == 2
    assert "hashed by another pipeline" in capsys.readouterr().err


def test_calibration_on_a_small_labelled_set_reaches_the_easy_targets():
    originals, copies, distractors = benchset.build(
        REPO, scenes=6, distractor_scenes=40, seed=5, every=12
    )  # a few photos and every scene
    distances = calibration.measure(originals, copies, distractors, workers=1)
    thresholds = calibration.choose(distances)
    summary = calibration.report(distances, thresholds)
    assert summary["false_positive_rate"] <= 0.001
    assert summary["families"]["jpeg"]["recall"] == 1.0 and summary["families"]["mirror"]["recall"] >= 0.9
    assert summary["families"]["mirror"]["baseline_phash10"] < 0.2  # what plain pHash misses
    shipped = json.loads((REPO / "src/estampille/lookalike/thresholds.json").read_text())
    assert shipped["thresholds"] == calibrated().as_dict()


def test_a_quarter_turned_copy_is_found_when_rotations_are_searched(competitor_index):
    original = Image.open(COMPETITOR / "boulangerie-doree-05.jpg")
    queries, _ = hash_queries_from_bytes([jpeg(original.transpose(Image.Transpose.ROTATE_90))])

    def found(hits):
        sources = competitor_index.describe({h.reference_id for h in hits})
        return {sources[h.reference_id]["source"].rsplit("/", 1)[1] for h in hits}

    assert "boulangerie-doree-05.jpg" not in found(search_store(competitor_index, queries))
    turned = search_store(competitor_index, queries, rotations=True)
    assert "boulangerie-doree-05.jpg" in found(turned)
    assert min(h.distances["pdq"] for h in turned) <= calibrated().pdq


def test_each_query_variant_is_the_hash_of_the_transformed_picture():
    """The candidate rule asks pHash and PDQ to agree under one transform: each variant must be the
    hashes of the query turned or flipped that way (PDQ's eight come from one pdqhash call)."""
    import pdqhash

    from estampille.lookalike.hashing import DIHEDRAL, hash_query, pdq_input, pdq_words

    image = decode(jpeg(Image.open(COMPETITOR / "boulangerie-doree-05.jpg")))
    query = hash_query(image)
    for n, transform in enumerate(DIHEDRAL):
        turned = image if transform is None else image.transpose(transform)
        bits, _ = pdqhash.compute(np.asarray(pdq_input(turned)))
        assert query.variant_pdq[n] == pdq_words(bits)
        assert query.variant_phash[n] == phash_of(turned.convert("L"))
