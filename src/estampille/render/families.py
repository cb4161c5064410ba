"""What each model family's pipeline takes, and what a brand's render settings become with it.

One table, so a brand that names FLUX.1 or SDXL-Turbo gets that model's defaults (steps,
guidance, size) and a clear error, or a recorded warning, for a setting the pipeline cannot
take, instead of a setting diffusers drops without a word (a negative prompt at guidance 0,
a size FLUX's 2x2 latent packing cannot divide).
Order of precedence: the brand's render settings, then the model's registry `defaults`, then
the family's.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from ..errors import ConfigError
from .registry import ResolvedModel


@dataclass(frozen=True)
class Family:
    name: str
    label: str
    pipeline: str  # diffusers text-to-image class of the family
    negative_prompt: Literal["cfg", "true_cfg"]  # applied with guidance > 1, or with true_cfg_scale > 1
    size_multiple: int  # VAE factor 8 × the denoiser's patch (2 for DiT families)
    image_to_image: bool  # AutoPipelineForImage2Image has a pipeline for it
    t5: bool  # takes max_sequence_length (a T5 encoder)
    gpu_dtype: Literal["float16", "bfloat16"]
    steps: int
    guidance: float
    size: int
    max_sequence_length: int | None = None
    fixed_arguments: dict[str, Any] = field(default_factory=dict)  # passed on every call, recorded

    def describe(self) -> str:
        return f"{self.label} ({self.name})"


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(
            "sd15",
            "Stable Diffusion 1.x/2.x",
            "StableDiffusionPipeline",
            "cfg",
            8,
            True,
            False,
            "float16",
            steps=30,
            guidance=7.5,
            size=512,
        ),
        Family(
            "sdxl",
            "Stable Diffusion XL",
            "StableDiffusionXLPipeline",
            "cfg",
            8,
            True,
            False,
            "float16",
            steps=30,
            guidance=5.0,
            size=1024,
        ),
        Family(
            "sd3",
            "Stable Diffusion 3.x",
            "StableDiffusion3Pipeline",
            "cfg",
            16,
            True,
            True,
            "bfloat16",
            steps=28,
            guidance=3.5,
            size=1024,
            max_sequence_length=256,
        ),
        Family(
            "flux",
            "FLUX.1",
            "FluxPipeline",
            "true_cfg",
            16,
            True,
            True,
            "bfloat16",
            steps=28,
            guidance=3.5,
            size=1024,
            max_sequence_length=512,
        ),
        # PixArt's caption cleaning needs BeautifulSoup and ftfy and falls back with a printed notice;
        # the prompts here are already plain text, so it is off and says so in the record.
        Family(
            "pixart",
            "PixArt-α/Σ",
            "PixArtAlphaPipeline",
            "cfg",
            16,
            False,
            True,
            "float16",
            steps=20,
            guidance=4.5,
            size=1024,
            max_sequence_length=120,
            fixed_arguments={"clean_caption": False},
        ),
    )
}


@dataclass(frozen=True)
class SpeedOptions:
    """GPU speed options, all off by default (the brand's render settings of the same names); those
    asked for are recorded with every image and enter its key, since some change pixels (dtype,
    fused projections, compiled kernels, VAE tiling)."""

    dtype: str = "auto"  # auto: the family's half precision on a GPU, float32 on CPU
    compile: str | None = None  # torch.compile mode for the denoiser
    channels_last: bool = False
    vae_slicing: bool = False
    vae_tiling: bool = False
    fuse_qkv: bool = False

    @classmethod
    def from_settings(cls, render: Any) -> SpeedOptions:
        return cls(**{f.name: getattr(render, f.name) for f in fields(cls)})

    @classmethod
    def from_record(cls, options: dict) -> SpeedOptions:
        return cls(**{f.name: options[f.name] for f in fields(cls) if f.name in options})

    def in_use(self) -> dict[str, Any]:
        """The options turned on, dtype apart (a render record keeps the dtype it really used)."""
        return {k: v for k, v in vars(self).items() if k != "dtype" and v}

    def asked(self) -> dict[str, Any]:
        """Everything the brand set, dtype included when it is not `auto`: what enters image keys."""
        return self.in_use() | ({"dtype": self.dtype} if self.dtype != "auto" else {})


PIPELINE_FAMILY = {
    "StableDiffusionPipeline": "sd15",
    "StableDiffusionXLPipeline": "sdxl",
    "StableDiffusion3Pipeline": "sd3",
    "FluxPipeline": "flux",
    "PixArtAlphaPipeline": "pixart",
    "PixArtSigmaPipeline": "pixart",
}


def family_of(model: ResolvedModel) -> Family:
    """The folder's own pipeline class (model_index.json) when the weights are here, else the registry's."""
    folder = Path(model.load_from)
    index = folder / "model_index.json"
    if index.is_file():
        class_name = json.loads(index.read_text(encoding="utf-8")).get("_class_name", "")
        if class_name in PIPELINE_FAMILY:
            return FAMILIES[PIPELINE_FAMILY[class_name]]
        raise ConfigError(
            f"model '{model.id}' at {folder} is a {class_name or 'unnamed'} pipeline, which "
            f"Estampille does not know how to drive; known: {', '.join(sorted(PIPELINE_FAMILY))}"
        )
    name = model.entry.family or PIPELINE_FAMILY.get(model.entry.pipeline)
    if name is None:
        raise ConfigError(
            f"model '{model.id}': set `family` ({', '.join(FAMILIES)}) in its registry entry, "
            "or put the model folder in place, so Estampille knows which arguments it takes"
        )
    return FAMILIES[name]


@dataclass(frozen=True)
class RenderPlan:
    """The render settings a batch really uses, after defaults and the family's rules."""

    family: Family
    steps: int
    guidance: float
    width: int
    height: int
    negative_prompt: bool  # the brand's negative prompt reaches the model
    true_cfg_scale: float | None = None
    max_sequence_length: int | None = None
    warnings: tuple[str, ...] = ()
    speed: SpeedOptions = SpeedOptions()  # the brand's speed options (they can change pixels)

    def key_extras(self) -> list[dict[str, Any]]:
        """What else changes pixels, for image keys: nothing when unset, so earlier runs' keys still hold."""
        extras = {
            k: v
            for k, v in (
                ("true_cfg_scale", self.true_cfg_scale),
                ("max_sequence_length", self.max_sequence_length),
                *self.speed.asked().items(),
            )
            if v
        }
        return [extras] if extras else []

    def record(self) -> dict[str, Any]:
        return {
            "family": self.family.name,
            "steps": self.steps,
            "guidance": self.guidance,
            "width": self.width,
            "height": self.height,
            "negative_prompt": self.negative_prompt,
            "true_cfg_scale": self.true_cfg_scale,
            "max_sequence_length": self.max_sequence_length,
            "fixed_arguments": self.family.fixed_arguments,
            "speed": self.speed.asked(),
            "warnings": list(self.warnings),
        }


def plan_render(
    model: ResolvedModel, render: Any, negative_prompt: str = "", references: Sequence[tuple[str, float]] = ()
) -> RenderPlan:
    """Resolve `render` (the brand's RenderSettings) for `model`. Raises ConfigError for what the
    pipeline cannot do; returns warnings for what it would ignore (they go into the run's record)."""
    family = family_of(model)
    defaults = model.entry.defaults
    steps = render.steps or defaults.steps or family.steps
    guidance = next(g for g in (render.guidance, defaults.guidance, family.guidance) if g is not None)
    size = defaults.size or family.size
    width, height = render.width or size, render.height or size
    where = f"model '{model.id}' ({family.describe()})"
    for axis, value in (("width", width), ("height", height)):
        if value % family.size_multiple:
            low = value - value % family.size_multiple
            raise ConfigError(
                f"render.{axis} {value} is not a multiple of {family.size_multiple}, which {where} "
                f"needs: use {low} or {low + family.size_multiple}"
            )
    if references and not family.image_to_image:
        raise ConfigError(
            f"post(s) {', '.join(p for p, _ in references)} set reference_image, but {where} has "
            "no image-to-image pipeline in diffusers: remove reference_image or choose another model"
        )
    for post, strength in references:
        if int(strength * steps) < 1:
            source = "render.steps" if render.steps else "the model's default"
            raise ConfigError(
                f"post {post}: strength {strength} × {steps} steps ({source}) leaves no "
                "denoising step: raise its strength or render.steps"
            )
    if render.true_cfg_scale is not None and family.negative_prompt != "true_cfg":
        raise ConfigError(
            f"render.true_cfg_scale is a FLUX setting; {where} applies the negative prompt "
            "through render.guidance (above 1) instead: remove true_cfg_scale"
        )
    sequence = render.max_sequence_length or defaults.max_sequence_length or family.max_sequence_length
    if render.max_sequence_length and not family.t5:
        raise ConfigError(
            f"render.max_sequence_length sets T5's prompt length; {where} has no T5 encoder "
            "(its CLIP encoders read 77 tokens): remove max_sequence_length"
        )
    warnings = []
    if defaults.guidance_free and guidance:
        warnings.append(
            f"{where} is guidance-distilled and ignores guidance: render.guidance {guidance} is recorded as 0"
        )
        guidance = 0.0
    if family.negative_prompt == "true_cfg":
        uses_negative = (render.true_cfg_scale or 1.0) > 1.0
        fix = "set render.true_cfg_scale (e.g. 4.0; each step then runs twice) to apply it"
    else:
        uses_negative = guidance > 1.0
        fix = "raise render.guidance above 1 to apply it (each step then runs twice)"
    if negative_prompt and not uses_negative:
        warnings.append(
            f"{where} does not apply negative prompts at these settings, so the brand's "
            f"negative prompt ({negative_prompt!r}) is not used and not recorded: {fix}"
        )
    return RenderPlan(
        family=family,
        steps=steps,
        guidance=float(guidance),
        width=width,
        height=height,
        negative_prompt=uses_negative,
        true_cfg_scale=render.true_cfg_scale,
        max_sequence_length=sequence if family.t5 else None,
        warnings=tuple(warnings),
        speed=SpeedOptions.from_settings(render),
    )
