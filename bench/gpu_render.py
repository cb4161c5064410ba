"""Render throughput of a model family at full size, on a GPU (or, reduced, on CPU), with no download.

    .venv/bin/python bench/gpu_render.py --family sdxl                     # a GPU, the family's defaults
    .venv/bin/python bench/gpu_render.py --family flux --compile max-autotune --fuse-qkv
    .venv/bin/python bench/gpu_render.py --family sdxl --size 256 --steps 2 --images 4   # CPU, as CI runs it

The family's real architecture is built from its published configuration with random weights
(no model hub is reachable here or on the GPU machines that may run this): the compute per step
is the real model's, the pictures are noise. The pipeline is then saved with save_pretrained
and loaded through Estampille's renderer (`load_model`, the speed options, `render`), so the
numbers are what the render stage gets, and N warm images are timed after one warm-up call.
Baseline in the same run: the bare diffusers call on the same pipeline, same prompts and seeds.
Published figures (with their source) are printed beside ours; they are other people's machines.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Progress bars of saving and loading 3-68 GB of weights would bury the table.
for _name, _value in (
    ("TQDM_DISABLE", "1"),
    ("HF_HUB_DISABLE_PROGRESS_BARS", "1"),
    ("TRANSFORMERS_VERBOSITY", "error"),
    ("DIFFUSERS_VERBOSITY", "error"),
):
    os.environ.setdefault(_name, _value)

# Published per-image latencies at the family's default settings, for scale.
PUBLISHED = {
    "sdxl": [
        (
            "A100 80GB, 1024² × 30 steps, fp32 PyTorch baseline",
            7.36,
            "diffusers docs, tutorials/fast_diffusion (benchmark CSV by S. Paul)",
        ),
        (
            "A100 80GB, 1024² × 30 steps, bf16 + SDPA + fused QKV + torch.compile",
            2.52,
            "diffusers docs, tutorials/fast_diffusion",
        ),
        (
            "H100, 1024² × 30 steps, diffusers PyTorch baseline",
            2.496,
            "model card of stabilityai/stable-diffusion-xl-1.0-tensorrt, Performance Comparison",
        ),
        ("H100, 1024² × 30 steps, TensorRT", 1.471, "same model card"),
    ],
    "sdxl-turbo": [
        ("H100, 512² × 4 steps, TensorRT", 0.0838, "model card of stabilityai/sdxl-turbo-tensorrt, Performance")
    ],
    "flux": [
        (
            "H100, 1024² × 4 steps (schnell), compiled",
            0.8,
            "figure quoted in issue 17, not traced to its "
            "source; huggingface/flux-fast reports ~2.5x over its bf16 baseline on H100 (bf16, compile, fused "
            "QKV, FA3, float8)",
        ),
        ("RTX 4090, 1024² × 4 steps (schnell), fp16", 2.6, "gigagpu.com FLUX.1-schnell benchmark"),
    ],
    "sd15": [],
    "sd3": [],
    "pixart": [],
}


def clip_config(hidden, layers, heads, intermediate, projection=None, act="quick_gelu"):
    return dict(
        vocab_size=49408,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_attention_heads=heads,
        num_hidden_layers=layers,
        max_position_embeddings=77,
        hidden_act=act,
        projection_dim=projection or hidden,
    )


T5_XXL = dict(
    vocab_size=32128,
    d_model=4096,
    d_ff=10240,
    d_kv=64,
    num_heads=64,
    num_layers=24,
    feed_forward_proj="gated-gelu",
    relative_attention_num_buckets=32,
)
CLIP_L = clip_config(768, 12, 12, 3072)
CLIP_G = clip_config(1280, 32, 20, 5120, projection=1280, act="gelu")
VAE_SD = dict(
    block_out_channels=[128, 256, 512, 512],
    layers_per_block=2,
    latent_channels=4,
    down_block_types=["DownEncoderBlock2D"] * 4,
    up_block_types=["UpDecoderBlock2D"] * 4,
)
VAE_FLOW = dict(VAE_SD, latent_channels=16, use_quant_conv=False, use_post_quant_conv=False)


def build_full_size(family: str):
    """The family's published architecture (the hub configs of SD 1.5, SDXL base, SD 3.5 Large,
    FLUX.1-schnell, PixArt-α XL 1024), random weights."""
    import diffusers as d
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, T5Config, T5EncoderModel

    from estampille.render.tiny import _clip_tokenizer, _t5_tokenizer

    def clip_tokenizer():
        tokenizer = _clip_tokenizer()
        tokenizer.model_max_length = 77
        return tokenizer

    def t5():
        return T5EncoderModel(T5Config(**T5_XXL))

    if family == "sd15":
        unet = d.UNet2DConditionModel(
            sample_size=64,
            cross_attention_dim=768,
            attention_head_dim=8,
            block_out_channels=(320, 640, 1280, 1280),
            layers_per_block=2,
        )
        return d.StableDiffusionPipeline(
            vae=d.AutoencoderKL(**VAE_SD, sample_size=512),
            text_encoder=CLIPTextModel(CLIPTextConfig(**CLIP_L)),
            tokenizer=clip_tokenizer(),
            unet=unet,
            scheduler=d.PNDMScheduler(),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    if family in ("sdxl", "sdxl-turbo"):
        unet = d.UNet2DConditionModel(
            sample_size=128,
            block_out_channels=(320, 640, 1280),
            layers_per_block=2,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            transformer_layers_per_block=(1, 2, 10),
            attention_head_dim=(5, 10, 20),
            cross_attention_dim=2048,
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=256,
            projection_class_embeddings_input_dim=2816,
        )
        scheduler = (
            d.EulerAncestralDiscreteScheduler(timestep_spacing="trailing")
            if family == "sdxl-turbo"
            else d.EulerDiscreteScheduler(
                beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, steps_offset=1
            )
        )
        return d.StableDiffusionXLPipeline(
            vae=d.AutoencoderKL(**VAE_SD, sample_size=1024, scaling_factor=0.13025),
            text_encoder=CLIPTextModel(CLIPTextConfig(**CLIP_L)),
            tokenizer=clip_tokenizer(),
            text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**CLIP_G)),
            tokenizer_2=clip_tokenizer(),
            unet=unet,
            scheduler=scheduler,
        )
    if family == "sd3":
        transformer = d.SD3Transformer2DModel(
            sample_size=128,
            patch_size=2,
            in_channels=16,
            out_channels=16,
            num_layers=38,
            attention_head_dim=64,
            num_attention_heads=38,
            joint_attention_dim=4096,
            caption_projection_dim=2432,
            pooled_projection_dim=2048,
            pos_embed_max_size=192,
            qk_norm="rms_norm",
        )
        return d.StableDiffusion3Pipeline(
            transformer=transformer,
            scheduler=d.FlowMatchEulerDiscreteScheduler(shift=3.0),
            vae=d.AutoencoderKL(**VAE_FLOW, sample_size=1024, scaling_factor=1.5305, shift_factor=0.0609),
            text_encoder=CLIPTextModelWithProjection(CLIPTextConfig(**{**CLIP_L, "projection_dim": 768})),
            tokenizer=clip_tokenizer(),
            text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**CLIP_G)),
            tokenizer_2=clip_tokenizer(),
            text_encoder_3=t5(),
            tokenizer_3=_t5_tokenizer(),
        )
    if family == "flux":
        transformer = d.FluxTransformer2DModel(
            patch_size=1,
            in_channels=64,
            num_layers=19,
            num_single_layers=38,
            attention_head_dim=128,
            num_attention_heads=24,
            joint_attention_dim=4096,
            pooled_projection_dim=768,
            guidance_embeds=False,
            axes_dims_rope=(16, 56, 56),
        )
        return d.FluxPipeline(
            scheduler=d.FlowMatchEulerDiscreteScheduler(shift=1.0),
            vae=d.AutoencoderKL(**VAE_FLOW, sample_size=1024, scaling_factor=0.3611, shift_factor=0.1159),
            text_encoder=CLIPTextModel(CLIPTextConfig(**CLIP_L)),
            tokenizer=clip_tokenizer(),
            text_encoder_2=t5(),
            tokenizer_2=_t5_tokenizer(),
            transformer=transformer,
        )
    if family == "pixart":
        transformer = d.PixArtTransformer2DModel(
            sample_size=128,
            num_layers=28,
            patch_size=2,
            attention_head_dim=72,
            num_attention_heads=16,
            caption_channels=4096,
            in_channels=4,
            out_channels=8,
            cross_attention_dim=1152,
            norm_type="ada_norm_single",
            use_additional_conditions=True,
        )
        return d.PixArtAlphaPipeline(
            tokenizer=_t5_tokenizer(),
            text_encoder=t5(),
            vae=d.AutoencoderKL(**VAE_SD, sample_size=1024),
            transformer=transformer,
            scheduler=d.DPMSolverMultistepScheduler(),
        )
    raise SystemExit(f"unknown family {family}")


REGISTRY_ID = {
    "sd15": "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "sdxl": "stabilityai/stable-diffusion-xl-base-1.0",
    "sdxl-turbo": "stabilityai/sdxl-turbo",
    "sd3": "stabilityai/stable-diffusion-3.5-large",
    "flux": "black-forest-labs/FLUX.1-schnell",
    "pixart": "PixArt-alpha/PixArt-XL-2-1024-MS",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", required=True, choices=sorted(REGISTRY_ID))
    parser.add_argument("--size", type=int, help="image side (default: the model's)")
    parser.add_argument("--steps", type=int, help="denoising steps (default: the model's)")
    parser.add_argument("--images", type=int, default=8, help="warm images to time")
    parser.add_argument("--batch", type=int, default=1, help="images per pipeline call")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float16", "bfloat16", "float32"])
    parser.add_argument(
        "--compile", choices=["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]
    )
    parser.add_argument("--fuse-qkv", action="store_true")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument(
        "--build-dtype",
        choices=["float32", "bfloat16", "float16"],
        help="dtype the random weights are made and saved in (default: bfloat16 with CUDA, else float32)",
    )
    parser.add_argument("--work", type=Path, help="folder for the built model (default: a temporary one)")
    args = parser.parse_args()

    import torch

    from estampille.brand import RenderSettings
    from estampille.render.families import plan_render
    from estampille.render.registry import ResolvedModel, load_registry
    from estampille.render.renderer import RenderJob, SpeedOptions, load_model, render

    work = args.work or Path(tempfile.mkdtemp(prefix="bench-gpu-"))
    folder = work / f"full-{args.family}"
    registry_id = REGISTRY_ID[args.family]
    entry = load_registry()[registry_id]
    started = time.perf_counter()
    if not (folder / "model_index.json").is_file():
        torch.manual_seed(0)
        # On a GPU machine the weights are made and saved in half precision: FLUX.1 in float32 would
        # need ~68 GB of RAM and disk just to exist. On CPU they stay float32 (CPU half is slow).
        build_dtype = getattr(torch, args.build_dtype or ("bfloat16" if torch.cuda.is_available() else "float32"))
        previous = torch.get_default_dtype()
        torch.set_default_dtype(build_dtype)
        try:
            pipeline = build_full_size(args.family)
        finally:
            torch.set_default_dtype(previous)
        params = sum(
            p.numel() for c in pipeline.components.values() if isinstance(c, torch.nn.Module) for p in c.parameters()
        )
        pipeline.save_pretrained(folder, safe_serialization=True)
        (folder / "params.json").write_text(json.dumps({"params": params}))
        del pipeline
    params = json.loads((folder / "params.json").read_text())["params"]
    build_s = time.perf_counter() - started
    model = ResolvedModel(id=registry_id, load_from=str(folder), entry=entry)
    plan = plan_render(model, RenderSettings(model=registry_id, steps=args.steps, width=args.size, height=args.size))
    speed = SpeedOptions(
        dtype=args.dtype, compile=args.compile, fuse_qkv=args.fuse_qkv, channels_last=args.channels_last
    )
    started = time.perf_counter()
    loaded = load_model(model, speed=speed)
    load_s = time.perf_counter() - started
    if loaded.device == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)

    def jobs(tag: str, n: int) -> list[RenderJob]:
        return [
            RenderJob(
                key=f"{tag}{i}",
                prompt=f"a sourdough loaf number {i} on a wooden table, morning light",
                negative_prompt="text, watermark" if plan.negative_prompt else "",
                seed=i,
                steps=plan.steps,
                guidance=plan.guidance,
                width=plan.width,
                height=plan.height,
                true_cfg_scale=plan.true_cfg_scale,
                max_sequence_length=plan.max_sequence_length,
            )
            for i in range(n)
        ]

    def sync():
        if loaded.device.startswith("cuda"):
            torch.cuda.synchronize()

    def timed_bare() -> float:
        pipe, todo = loaded.pipeline, jobs("b", args.images)
        started = time.perf_counter()
        for start in range(0, args.images, args.batch):
            chunk = todo[start : start + args.batch]
            extra = {**loaded.family.fixed_arguments, **chunk[0].family_arguments()}
            if plan.negative_prompt:
                extra["negative_prompt"] = [j.negative_prompt for j in chunk]
            with torch.inference_mode():
                pipe(
                    prompt=[j.prompt for j in chunk],
                    num_inference_steps=plan.steps,
                    guidance_scale=plan.guidance,
                    width=plan.width,
                    height=plan.height,
                    **extra,
                    generator=[torch.Generator("cpu").manual_seed(j.seed) for j in chunk],
                )
        sync()
        return time.perf_counter() - started

    def timed_ours() -> float:
        started = time.perf_counter()
        images = list(render(loaded, jobs("o", args.images), args.batch))
        sync()
        assert all(r.image is not None for r in images), [r.error for r in images if r.error]
        return time.perf_counter() - started

    started = time.perf_counter()
    list(render(loaded, jobs("w", args.batch), args.batch))  # warm-up (and compilation, if asked)
    sync()
    warm_s = time.perf_counter() - started
    bare, ours = timed_bare(), timed_ours()  # one warm pass each: a full-size image takes seconds
    device = (
        torch.cuda.get_device_name(loaded.device)
        if loaded.device.startswith("cuda")
        else f"CPU, {torch.get_num_threads()} threads"
    )
    n = args.images
    print(
        f"{args.family} full-size architecture ({params / 1e9:.2f} B parameters, random weights) on {device}; "
        f"{plan.width}x{plan.height}, {plan.steps} steps, guidance {plan.guidance}, batch {args.batch}, "
        f"{loaded.options}"
    )
    print(f"build+save {build_s:.1f} s, load {load_s:.1f} s, warm-up {warm_s:.1f} s")
    print(f"{'measure':66s} {'s/image':>9s} {'images/s':>9s} {'ratio':>7s}")
    print(f"{'bare diffusers call (baseline, this run)':66s} {bare / n:9.3f} {n / bare:9.2f} {1:7.2f}")
    print(f"{'Estampille renderer (render())':66s} {ours / n:9.3f} {n / ours:9.2f} {ours / bare:7.2f}")
    for label, seconds, source in PUBLISHED[args.family]:
        print(f"{'published: ' + label:66s} {seconds:9.3f} {1 / seconds:9.2f} {(ours / n) / seconds:7.2f}   [{source}]")
    if PUBLISHED[args.family] and (plan.width < 512 or loaded.device == "cpu"):
        print("(ratio to published figures is meaningful only on a GPU at the family's default size and steps)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
