"""Every model family in the registry renders through the real diffusers path: a tiny build of
each (SD 1.5, SDXL, SD 3, FLUX.1-schnell, PixArt-α), saved with save_pretrained and loaded
with from_pretrained, as a hub folder would be."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import yaml
from PIL import Image

from estampille.cli import main
from estampille.errors import ConfigError
from estampille.ledger import Ledger
from estampille.provenance.c2pa_manifest import read_manifest
from estampille.records import Render
from estampille.render.families import FAMILIES, plan_render
from estampille.render.registry import resolve_model
from estampille.render.renderer import RenderJob, SpeedOptions, load_model, render, weights_sha256
from estampille.render.rerender import rerender
from estampille.settings import Settings

from .conftest import DEMO_WEEK, keep_posts
from .test_render import SmallGPU

ALL = list(FAMILIES)
PIPELINE = {
    "sd15": "StableDiffusionPipeline",
    "sdxl": "StableDiffusionXLPipeline",
    "sd3": "StableDiffusion3Pipeline",
    "flux": "FluxPipeline",
    "pixart": "PixArtAlphaPipeline",
}


@pytest.fixture(scope="module")
def loaded_family(tiny_family_dir):
    models: dict = {}

    def get(family):
        if family not in models:
            models[family] = load_model(resolve_model(str(tiny_family_dir(family)), tiny_family_dir(family).parent))
        return models[family]

    return get


def _job(seed, family, **changes):
    plan_defaults = {"max_sequence_length": 64 if FAMILIES[family].t5 else None}
    job = RenderJob(
        key=f"k{seed}",
        prompt="a sourdough loaf on a wooden table, morning light",
        negative_prompt="" if family == "flux" else "text, watermark",
        seed=seed,
        steps=2,
        guidance=0.0 if family == "flux" else 4.0,
        width=64,
        height=64,
        **plan_defaults,
    )
    return dataclasses.replace(job, **changes)


@pytest.mark.parametrize("family", ALL)
def test_each_family_renders_seed_exact_and_records_what_made_the_image(loaded_family, tiny_family_dir, family):
    loaded = loaded_family(family)
    assert type(loaded.pipeline).__name__ == PIPELINE[family] and loaded.family.name == family
    record = loaded.describe()
    assert record["weights_sha256"] == weights_sha256(tiny_family_dir(family))
    assert record["pipeline_class"] == PIPELINE[family]
    environment = loaded.environment()
    assert environment["options"]["family"] == family and environment["options"]["dtype"] == "float32"
    assert environment["scheduler"]["class"] == type(loaded.pipeline.scheduler).__name__
    jobs = [_job(seed, family) for seed in (1, 2, 3)]
    batch = {r.job.key: np.asarray(r.image) for r in render(loaded, jobs, 3)}
    assert batch["k1"].shape == (64, 64, 3) and not np.array_equal(batch["k1"], batch["k2"])
    # at batch size 3 the middle image's pixels depend on its position: re-created from it
    alone = next(render(loaded, [dataclasses.replace(jobs[1], batch_index=1)], 3, pad=True))
    assert alone.batch_size == 3 and np.array_equal(np.asarray(alone.image), batch["k2"])


@pytest.mark.parametrize("family", ALL)
def test_each_family_splits_a_batch_that_does_not_fit(loaded_family, family):
    loaded = loaded_family(family)
    gpu = SmallGPU(loaded.pipeline, fits=1)
    results = list(render(dataclasses.replace(loaded, pipeline=gpu), [_job(s, family) for s in (1, 2)], 2))
    assert gpu.calls == [2, 1, 1] and all(r.image is not None and r.batch_size == 1 for r in results)


@pytest.mark.parametrize("family", [f for f in ALL if FAMILIES[f].image_to_image])
def test_image_to_image_where_the_family_has_it(loaded_family, tmp_path, family):
    reference = tmp_path / "ref.png"
    Image.new("RGB", (96, 80), (200, 120, 40)).save(reference)
    loaded = loaded_family(family)
    result = next(render(loaded, [_job(5, family, steps=4, reference=reference, strength=0.5)], 1))
    assert result.image.size == (64, 64)  # the asked size, not the reference's, nor the model's default
    assert type(loaded.image_to_image()).__name__.endswith("Img2ImgPipeline")
    # the picture really starts from the reference: another reference, same seed, other pixels
    other = tmp_path / "other.png"
    Image.new("RGB", (96, 80), (20, 60, 220)).save(other)
    from_other = next(render(loaded, [_job(5, family, steps=4, reference=other, strength=0.5)], 1))
    assert not np.array_equal(np.asarray(result.image), np.asarray(from_other.image))


def _settings_with(**render):
    from estampille.brand import RenderSettings

    return RenderSettings(**render)


def test_each_model_gets_its_own_defaults_and_the_brand_overrides_them(tmp_path):
    schnell = plan_render(resolve_model("black-forest-labs/FLUX.1-schnell", tmp_path), _settings_with())
    assert (schnell.steps, schnell.guidance, schnell.width, schnell.max_sequence_length) == (4, 0.0, 1024, 256)
    turbo = plan_render(resolve_model("stabilityai/sdxl-turbo", tmp_path), _settings_with())
    assert (turbo.steps, turbo.guidance, turbo.width, turbo.family.name) == (1, 0.0, 512, "sdxl")
    sdxl = plan_render(resolve_model("stabilityai/stable-diffusion-xl-base-1.0", tmp_path), _settings_with(steps=20))
    assert (sdxl.steps, sdxl.guidance, sdxl.width, sdxl.max_sequence_length) == (20, 5.0, 1024, None)
    pixart = plan_render(resolve_model("PixArt-alpha/PixArt-XL-2-1024-MS", tmp_path), _settings_with())
    assert pixart.max_sequence_length == 120 and pixart.family.fixed_arguments == {"clean_caption": False}


def test_settings_a_pipeline_cannot_take_are_errors_or_recorded_warnings(tmp_path):
    flux = resolve_model("black-forest-labs/FLUX.1-schnell", tmp_path)
    with pytest.raises(ConfigError, match=r"render.width 1000 is not a multiple of 16.*use 992 or 1008"):
        plan_render(flux, _settings_with(width=1000))
    with pytest.raises(ConfigError, match="no T5 encoder"):
        plan_render(resolve_model("stabilityai/sdxl-turbo", tmp_path), _settings_with(max_sequence_length=128))
    with pytest.raises(ConfigError, match="true_cfg_scale is a FLUX setting"):
        plan_render(resolve_model("stabilityai/sdxl-turbo", tmp_path), _settings_with(true_cfg_scale=4))
    with pytest.raises(ConfigError, match="post atelier has no|atelier set reference_image"):
        plan_render(
            resolve_model("PixArt-alpha/PixArt-XL-2-1024-MS", tmp_path), _settings_with(), "", [("atelier", 0.6)]
        )
    ignored = plan_render(flux, _settings_with(guidance=5.0), "text, watermark")
    assert ignored.guidance == 0.0 and not ignored.negative_prompt
    assert any("ignores guidance" in w for w in ignored.warnings)
    assert any(
        "negative prompt ('text, watermark') is not used" in w and "true_cfg_scale" in w for w in ignored.warnings
    )
    applied = plan_render(flux, _settings_with(true_cfg_scale=4.0), "text, watermark")
    assert applied.negative_prompt and not applied.warnings and applied.key_extras()[0]["true_cfg_scale"] == 4.0
    turbo = plan_render(resolve_model("stabilityai/sdxl-turbo", tmp_path), _settings_with(), "text")
    assert not turbo.negative_prompt and "raise render.guidance above 1" in turbo.warnings[0]


def test_flux_dev_is_refused_to_a_commercial_brand_and_schnell_accepted(brand_copy, settings):
    from estampille.batch import check_inputs
    from estampille.errors import LicenceError

    brand_file = brand_copy / "brand.yaml"
    original = brand_file.read_text()
    assert "licence_policy: commercial" in original
    brand_file.write_text(original.replace("model: builtin:tiny-sd", "model: black-forest-labs/FLUX.1-dev"))
    with pytest.raises(LicenceError, match="LicenseRef-FLUX.1-dev-Non-Commercial"):
        check_inputs(brand_copy, DEMO_WEEK, settings)
    brand_file.write_text(
        original.replace("model: builtin:tiny-sd", "model: black-forest-labs/FLUX.1-schnell")
        .replace("  width: 256\n", "")
        .replace("  height: 256\n", "")
    )
    inputs = check_inputs(brand_copy, DEMO_WEEK, settings)
    assert inputs.model.entry.licence == "Apache-2.0" and inputs.plan.steps == 4 and inputs.plan.width == 1024


def test_speed_options_are_applied_and_recorded(tiny_family_dir, loaded_family):
    folder = tiny_family_dir("sdxl")
    fast = load_model(
        resolve_model(str(folder), folder.parent),
        speed=SpeedOptions(channels_last=True, vae_slicing=True, vae_tiling=True, fuse_qkv=True),
    )
    assert fast.options == {
        "dtype": "float32",
        "channels_last": True,
        "vae_slicing": True,
        "vae_tiling": True,
        "fuse_qkv": True,
    }
    assert fast.pipeline.vae.use_slicing and fast.pipeline.vae.use_tiling
    assert fast.pipeline.unet.conv_in.weight.is_contiguous(memory_format=__import__("torch").channels_last)
    assert next(render(fast, [_job(1, "sdxl")], 1)).image.size == (64, 64)
    # torch.compile wraps the denoiser (compiled lazily, at the first call: ~40 s on these 2 cores for the tiny
    # model, pixel-identical to eager there; measured by hand, not run here) and is recorded
    compiled = load_model(resolve_model(str(folder), folder.parent), speed=SpeedOptions(compile="default"))
    assert type(compiled.pipeline.unet).__name__ == "OptimizedModule"
    assert compiled.options == {"dtype": "float32", "compile": "default"}
    with pytest.raises(ConfigError, match="channels_last speeds up UNet convolutions"):
        folder = tiny_family_dir("flux")
        load_model(resolve_model(str(folder), folder.parent), speed=SpeedOptions(channels_last=True))


def _family_brand(brand_copy, folder, posts):
    """The demo brand rendering with `folder`, with the model's own defaults (steps, guidance, size)."""
    brand_file = brand_copy / "brand.yaml"
    brand = yaml.safe_load(brand_file.read_text(encoding="utf-8"))
    brand["render"] = {"model": str(folder), "images_per_variant": 1, "batch_size": 4}
    brand["text"] = {**brand.get("text", {}), "variants": 1}
    brand_file.write_text(yaml.safe_dump(brand, allow_unicode=True), encoding="utf-8")
    calendar = brand_copy / "calendar.yaml"
    calendar.write_text(
        calendar.read_text()
        .replace("    # reference_image:", "    reference_image:")
        .replace("    # strength:", "    strength:")
    )
    return keep_posts(brand_copy, posts)


@pytest.mark.parametrize("family", ALL)
def test_a_batch_with_each_family_runs_end_to_end_signed_and_recorded(
    fake_llm, brand_copy, tiny_family_dir, family, capsys
):
    posts = ["levain-lundi"] + (["atelier-samedi"] if FAMILIES[family].image_to_image else [])
    brand = _family_brand(brand_copy, tiny_family_dir(family), posts)
    assert main(["run", "--brand", str(brand), "--week", DEMO_WEEK, "--engine", "plain"]) == 0
    settings = Settings.from_env()
    ledger = Ledger(settings.ledger_url)
    renders = [e.payload for e in ledger.events(kind="render.created")]
    signed = [e.payload for e in ledger.events(kind="provenance.signed")]
    started = [e.payload for e in ledger.events(kind="run.started")][0]
    ledger.close()
    assert len(renders) == len(posts) and len(signed) == len(posts)
    assert started["render_plan"]["family"] == family
    for record in renders:
        assert record["model"]["pipeline_class"] == PIPELINE[family]
        assert record["options"]["family"] == family and record["options"]["dtype"] == "float32"
        assert (record["steps"], record["width"], record["height"]) == (4, 256, 256)
        assert record["model"]["weights_sha256"] == weights_sha256(tiny_family_dir(family))
        if FAMILIES[family].t5:
            assert record["options"]["max_sequence_length"] == 256
        if family == "flux":  # schnell's shape: no guidance input, no negative prompt at true_cfg 1
            assert record["guidance"] == 0.0 and record["negative_prompt"] == ""
        else:
            assert record["negative_prompt"].startswith("text, watermark")
    assert {r["mode"] for r in renders} == (
        {"text-to-image", "image-to-image"} if len(posts) == 2 else {"text-to-image"}
    )
    run_dir = settings.out / "brand" / DEMO_WEEK
    for record in signed:
        data = (run_dir / record["file"]).read_bytes()
        generation = next(
            a["data"]
            for a in read_manifest(data, "image/png", None).active["assertions"]
            if a["label"] == "org.estampille.generation"
        )
        assert generation["pipeline"] == PIPELINE[family] and generation["family"] == family
    summary = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").is_file() else {}
    if family == "flux":
        out = capsys.readouterr().out + json.dumps(summary)
        assert "negative prompt" in out and "true_cfg_scale" in out
    # the record alone re-creates the image, to the byte
    again = rerender(Render.model_validate(renders[0]), settings, run_dir / renders[0]["file"])
    assert again.identical and again.differing_pixels == 0


def test_each_family_gets_its_half_precision_on_a_gpu_and_float32_on_cpu(monkeypatch):
    """bf16 for FLUX and SD 3 (their activations overflow fp16) where the GPU has it, fp16 for the
    UNet families and PixArt; what the brand asks for wins. torch's answer about the GPU's bf16
    support is stood in for: this machine has no GPU."""
    import torch

    from estampille.render.renderer import pick_dtype

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    on_gpu = {name: pick_dtype("cuda:0", family) for name, family in FAMILIES.items()}
    assert on_gpu == {
        "sd15": torch.float16,
        "sdxl": torch.float16,
        "sd3": torch.bfloat16,
        "flux": torch.bfloat16,
        "pixart": torch.float16,
    }
    assert all(pick_dtype("cpu", family) == torch.float32 for family in FAMILIES.values())
    assert pick_dtype("cuda:0", FAMILIES["flux"], "float32") == torch.float32
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)  # a T4 or V100
    assert pick_dtype("cuda:0", FAMILIES["flux"]) == torch.float16


@pytest.mark.parametrize(
    "model_id, family, steps", [("stabilityai/sdxl-turbo", "sdxl", 1), ("black-forest-labs/FLUX.1-schnell", "flux", 4)]
)
def test_a_registry_model_in_its_hub_folder_renders_with_its_own_defaults(
    tiny_family_dir, tmp_path, model_id, family, steps
):
    """A user puts a model's hub folder under models/<id>: the registry entry's loader (SDXL-Turbo's
    AutoPipelineForText2Image), defaults (1 or 4 steps, guidance 0) and licence apply to it."""
    import shutil

    models_dir = tmp_path / "models"
    shutil.copytree(tiny_family_dir(family), models_dir / model_id)
    (models_dir / model_id / "estampille_model.json").unlink()  # a hub folder has no marker
    model = resolve_model(model_id, models_dir)
    assert model.load_from == str(models_dir / model_id)
    plan = plan_render(model, _settings_with(width=64, height=64), "text, watermark")
    assert (plan.steps, plan.guidance, plan.family.name, plan.negative_prompt) == (steps, 0.0, family, False)
    loaded = load_model(model)
    # loaded through the entry's class (AutoPipelineForText2Image for Turbo), recorded as the class it made
    assert loaded.describe()["pipeline_class"] == PIPELINE[family] and loaded.family.name == family
    job = RenderJob(
        key="hub",
        prompt="a sourdough loaf",
        negative_prompt="",
        seed=3,
        steps=plan.steps,
        guidance=plan.guidance,
        width=plan.width,
        height=plan.height,
        max_sequence_length=plan.max_sequence_length,
    )
    first, again = next(render(loaded, [job], 1)), next(render(loaded, [job], 1, pad=True))
    assert first.image.size == (64, 64) and np.array_equal(np.asarray(first.image), np.asarray(again.image))
