"""Rendering through the real diffusers loading path, on the tiny model the project builds."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from estampille.cli import main
from estampille.errors import LicenceError, ModelNotFoundError
from estampille.render.registry import TINY_ID, check_licence, load_registry, resolve_model
from estampille.render.renderer import RenderJob, load_model, render, weights_sha256


def _job(seed, key="k"):
    return RenderJob(key=f"{key}{seed}", prompt="a sourdough loaf on a table", negative_prompt="text",
                     seed=seed, steps=3, guidance=5.0, width=64, height=64)


@pytest.fixture(scope="module")
def loaded(tiny_model_dir, tmp_path_factory):
    models = tmp_path_factory.mktemp("m")
    (models / "tiny-sd").symlink_to(tiny_model_dir)
    return load_model(resolve_model(TINY_ID, models))


def test_tiny_model_loads_with_from_pretrained_and_records_its_identity(loaded, tiny_model_dir):
    record = loaded.describe()
    assert record["pipeline_class"] == "StableDiffusionPipeline" and record["test_model"] is True
    assert record["weights_sha256"] == weights_sha256(tiny_model_dir) and len(record["weights_sha256"]) == 64
    assert record["licence"] == "Apache-2.0" and loaded.device == "cpu"


def test_same_seed_and_batch_size_give_the_same_pixels_whatever_the_other_images(loaded):
    jobs = [_job(seed) for seed in range(1, 9)]
    batch = {job.key: np.asarray(image) for job, image, _, size in render(loaded, jobs, 8)}
    alone = {job.key: (np.asarray(image), size) for job, image, _, size in render(loaded, [jobs[2]], 8, pad=True)}
    assert np.array_equal(alone["k3"][0], batch["k3"]) and alone["k3"][1] == 8
    assert not np.array_equal(batch["k1"], batch["k2"])
    assert batch["k1"].shape == (64, 64, 3)
    assert not np.array_equal(batch["k1"], batch["k2"])
    assert batch["k1"].shape == (64, 64, 3)


def test_weights_digest_is_cached_by_file_stats(tiny_model_dir, tmp_path):
    cache = tmp_path / "digests.json"
    first = weights_sha256(tiny_model_dir, cache)
    assert cache.is_file() and weights_sha256(tiny_model_dir, cache) == first


def test_missing_model_folder_names_the_fix(tmp_path):
    with pytest.raises(ModelNotFoundError, match="estampille models build-tiny"):
        resolve_model(TINY_ID, tmp_path / "nowhere")
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve_model(str(tmp_path / "my-model"), tmp_path)


def test_damaged_model_folder_is_a_clear_error(tiny_model_dir, tmp_path):
    broken = tmp_path / "tiny-sd"
    shutil.copytree(tiny_model_dir, broken)
    for weights in (broken / "unet").glob("*.safetensors"):
        weights.write_bytes(b"not safetensors")
    with pytest.raises(ModelNotFoundError, match="cannot load model"):
        load_model(resolve_model(TINY_ID, tmp_path))


def test_licence_gate_refuses_non_commercial_model_for_commercial_brand(tmp_path):
    registry = load_registry()
    flux_dev = resolve_model("black-forest-labs/FLUX.1-dev", tmp_path)
    with pytest.raises(LicenceError) as error:
        check_licence(flux_dev, "commercial", [], registry)
    message = str(error.value)
    assert "FLUX.1-dev" in message and "LicenseRef-FLUX.1-dev-Non-Commercial" in message
    assert "black-forest-labs/FLUX.1-schnell" in message and TINY_ID not in message
    check_licence(flux_dev, "non-commercial", [], registry)   # allowed for a non-commercial brand


def test_conditional_licence_needs_explicit_acceptance(tmp_path):
    registry = load_registry()
    turbo = resolve_model("stabilityai/sdxl-turbo", tmp_path)
    with pytest.raises(LicenceError, match="accepted_licences"):
        check_licence(turbo, "commercial", [], registry)
    check_licence(turbo, "commercial", ["LicenseRef-Stability-AI-Community"], registry)


def test_unknown_model_is_refused_because_its_licence_is_unknown(tmp_path):
    with pytest.raises(LicenceError, match="not in the model registry"):
        resolve_model("someone/mystery-model", tmp_path)


def test_cli_builds_tiny_model_that_from_pretrained_loads(tmp_path, capsys):
    folder = tmp_path / "built"
    assert main(["models", "build-tiny", "--out", str(folder)]) == 0
    assert (folder / "model_index.json").is_file() and "test only" in capsys.readouterr().out
    from diffusers import StableDiffusionPipeline

    pipeline = StableDiffusionPipeline.from_pretrained(folder)
    assert pipeline.tokenizer("croissant").input_ids[0] == pipeline.tokenizer.bos_token_id
