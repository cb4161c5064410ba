"""Rendering through the real diffusers loading path, on the tiny model the project builds."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from estampille.cli import main
from estampille.errors import LicenceError, ModelNotFoundError
from estampille.render.registry import TINY_ID, check_licence, load_registry, resolve_model
from estampille.render.renderer import RenderJob, load_model, render, weights_sha256
from estampille.render.tiny import build_tiny_model


def _job(seed, key="k"):
    return RenderJob(
        key=f"{key}{seed}",
        prompt="a sourdough loaf on a table",
        negative_prompt="text",
        seed=seed,
        steps=3,
        guidance=5.0,
        width=64,
        height=64,
    )


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
    batch = {r.job.key: np.asarray(r.image) for r in render(loaded, jobs, 8)}
    alone = {r.job.key: (np.asarray(r.image), r.batch_size) for r in render(loaded, [jobs[2]], 8, pad=True)}
    assert np.array_equal(alone["k3"][0], batch["k3"]) and alone["k3"][1] == 8
    assert not np.array_equal(batch["k1"], batch["k2"])
    assert batch["k1"].shape == (64, 64, 3)


def test_scheduler_is_chosen_by_name(tiny_model_dir, tmp_path):
    (tmp_path / "tiny-sd").symlink_to(tiny_model_dir)
    euler = load_model(resolve_model(TINY_ID, tmp_path), scheduler="EulerDiscreteScheduler")
    assert type(euler.pipeline.scheduler).__name__ == "EulerDiscreteScheduler"
    image = next(render(euler, [_job(1)], 1)).image
    assert image.size == (64, 64)


def test_attention_slicing_option_is_applied_and_still_renders(tiny_model_dir, tmp_path):
    from diffusers.models.attention_processor import SlicedAttnProcessor

    (tmp_path / "tiny-sd").symlink_to(tiny_model_dir)
    sliced = load_model(resolve_model(TINY_ID, tmp_path), attention_slicing=True, cpu_offload=True)
    processors = sliced.pipeline.unet.attn_processors.values()
    assert processors and all(isinstance(p, SlicedAttnProcessor) for p in processors)
    assert sliced.device == "cpu"  # CPU offload only applies on CUDA; on CPU it is a no-op
    assert next(render(sliced, [_job(1)], 1)).image.size == (64, 64)


def test_image_to_image_starts_from_the_reference(loaded, tmp_path):
    from PIL import Image

    reference = tmp_path / "ref.png"
    Image.new("RGB", (80, 80), (200, 120, 40)).save(reference)
    base = RenderJob(**{**_job(5).__dict__, "steps": 10})
    light = next(
        render(loaded, [RenderJob(**{**base.__dict__, "key": "a", "reference": reference, "strength": 0.3})], 1)
    ).image
    text_only = next(render(loaded, [base], 1)).image
    orange = np.array([200, 120, 40])
    # a light touch keeps the reference's colour; the text-only render of the same seed does not
    assert (
        np.abs(np.asarray(light).reshape(-1, 3).mean(0) - orange).max()
        < np.abs(np.asarray(text_only).reshape(-1, 3).mean(0) - orange).max()
    )


class SmallGPU:
    """Hardware boundary stand-in: the real tiny pipeline behind a memory ceiling of `fits`
    images per call, raising torch's own OutOfMemoryError above it (no GPU on these machines)."""

    def __init__(self, pipeline, fits, never=()):
        self.pipeline, self.fits, self.never, self.calls = pipeline, fits, never, []

    def __call__(self, **kwargs):
        import torch

        self.calls.append(len(kwargs["prompt"]))
        if len(kwargs["prompt"]) > self.fits or any(p in self.never for p in kwargs["prompt"]):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.pipeline(**kwargs)


def test_out_of_memory_splits_the_batch_then_fails_only_the_image_that_cannot_fit(loaded):
    import dataclasses

    gpu = SmallGPU(loaded.pipeline, fits=2, never=("too big",))
    small = dataclasses.replace(loaded, pipeline=gpu)
    jobs = [_job(seed) for seed in range(1, 5)] + [RenderJob(**{**_job(9).__dict__, "key": "big", "prompt": "too big"})]
    results = {r.job.key: r for r in render(small, jobs, 5)}
    assert gpu.calls[:3] == [5, 2, 3]  # 5 fails, halves tried: 2 fits, 3 fails and splits again
    assert all(results[f"k{i}"].image is not None and results[f"k{i}"].batch_size <= 2 for i in range(1, 5))
    assert results["big"].image is None and "out of memory" in results["big"].error


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
    check_licence(flux_dev, "non-commercial", [], registry)  # allowed for a non-commercial brand


def test_conditional_licence_needs_explicit_acceptance(tmp_path):
    registry = load_registry()
    turbo = resolve_model("stabilityai/sdxl-turbo", tmp_path)
    with pytest.raises(LicenceError, match="accepted_licences"):
        check_licence(turbo, "commercial", [], registry)
    check_licence(turbo, "commercial", ["LicenseRef-Stability-AI-Community"], registry)


def test_unknown_model_is_refused_because_its_licence_is_unknown(tmp_path):
    with pytest.raises(LicenceError, match="not in the model registry"):
        resolve_model("someone/mystery-model", tmp_path)


def test_rerender_command_recreates_a_batch_image_pixel_identical(batch_copy, isolated, capsys):
    from estampille.ledger import Ledger
    from estampille.settings import Settings

    ledger = Ledger(Settings.from_env().ledger_url)
    image_id = ledger.events(kind="render.created")[3].key
    ledger.close()
    assert main(["rerender", image_id, "--out", str(isolated / "again.png")]) == 0
    out = capsys.readouterr().out
    assert "pixel-identical" in out and (isolated / "again.png").is_file()
    assert main(["rerender", "img-nope"]) == 1
    assert "no render img-nope" in capsys.readouterr().err


def test_rerender_refuses_other_weights(batch_copy, isolated, tmp_path, capsys):
    from estampille.ledger import Ledger

    settings = batch_copy["settings"]
    ledger = Ledger(settings.ledger_url)
    image_id = ledger.events(kind="render.created")[0].key
    ledger.close()
    from safetensors.torch import load_file, save_file

    (settings.models_dir / "tiny-sd").unlink()  # the shared session model stays untouched
    build = build_tiny_model(settings.models_dir / "tiny-sd")
    weights = next((build / "unet").glob("*.safetensors"))
    tensors = load_file(weights)
    first = next(iter(tensors))
    tensors[first] = tensors[first] + 1.0
    save_file(tensors, weights)
    assert main(["rerender", image_id]) == 1
    assert "not the recorded ones" in capsys.readouterr().err


def test_cli_builds_tiny_model_that_from_pretrained_loads(tmp_path, capsys):
    folder = tmp_path / "built"
    assert main(["models", "build-tiny", "--out", str(folder)]) == 0
    assert (folder / "model_index.json").is_file() and "test only" in capsys.readouterr().out
    from diffusers import StableDiffusionPipeline

    pipeline = StableDiffusionPipeline.from_pretrained(folder)
    assert pipeline.tokenizer("croissant").input_ids[0] == pipeline.tokenizer.bos_token_id


def test_a_render_worker_without_its_gpu_is_an_error_that_names_it(monkeypatch):
    """Hardware boundary stand-in (these machines have no GPU): torch reports two CUDA devices."""
    import torch

    from estampille.errors import SetupError
    from estampille.render.renderer import pick_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert pick_device(1) == "cuda:1"
    with pytest.raises(SetupError, match="needs GPU number 2, but this machine has 2"):
        pick_device(2)  # was silently GPU 0, shared with worker 1
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")  # a Dask worker pinned to its GPU
    assert pick_device(2) == "cuda:0"


def test_an_unknown_pipeline_class_is_an_error_that_names_it(tiny_model_dir, tmp_path):
    from estampille.errors import ConfigError
    from estampille.render.registry import ModelEntry, ResolvedModel

    entry = ModelEntry(
        name="typo",
        licence="Apache-2.0",
        commercial_use="yes",
        licence_source="test",
        pipeline="StableDifusionPipeline",
    )
    with pytest.raises(ConfigError, match="'StableDifusionPipeline' is not a diffusers pipeline class"):
        load_model(ResolvedModel(id="typo", load_from=str(tiny_model_dir), entry=entry))


def test_a_model_written_twice_in_the_users_registry_is_an_error(tmp_path):
    from estampille.errors import ConfigError

    (tmp_path / "models.yaml").write_text("acme/model-a:\n  licence: Apache-2.0\nacme/model-a:\n  licence: MIT\n")
    with pytest.raises(ConfigError, match=r"models.yaml, line 3: key 'acme/model-a' appears twice, on line 1 and"):
        load_registry(tmp_path)
