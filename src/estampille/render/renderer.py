"""Load a diffusers pipeline once per batch and render seeded images in batches.

Everything needed to re-create an image is returned with it: model id, revision, SHA-256
of the weight files, pipeline and scheduler, steps, guidance, size, seed, library versions,
device. On CPU, the same record gives the same pixels.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..errors import ConfigError, ModelNotFoundError, SetupError
from ..records import Render
from .families import Family, SpeedOptions, family_of
from .registry import ResolvedModel

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".gguf")


@dataclass(frozen=True, kw_only=True)
class RenderJob:
    key: str
    prompt: str
    negative_prompt: str
    seed: int
    steps: int
    guidance: float
    width: int
    height: int
    reference: Path | None = None  # image-to-image input
    strength: float = 0.6
    true_cfg_scale: float | None = None  # FLUX only: applies the negative prompt above 1
    max_sequence_length: int | None = None  # T5 families: prompt tokens the T5 encoder reads
    batch_index: int = 0  # re-creation: the recorded position in its batch

    @classmethod
    def from_record(cls, record: Render, reference: Path | None = None) -> RenderJob:
        """The job that made a recorded image, for re-creating it: every input is the record's
        (`reference`: the record's image-to-image input, once its content was checked)."""
        return cls(
            key=record.image_id,
            prompt=record.prompt,
            negative_prompt=record.negative_prompt,
            seed=record.seed,
            steps=record.steps,
            guidance=record.guidance,
            width=record.width,
            height=record.height,
            reference=reference,
            strength=record.reference["strength"] if reference and record.reference else 0.6,
            true_cfg_scale=record.options.get("true_cfg_scale"),
            max_sequence_length=record.options.get("max_sequence_length"),
            batch_index=record.batch_index,
        )

    def family_arguments(self) -> dict[str, Any]:
        """The family-specific call arguments this job sets (recorded with its image)."""
        return {
            k: v
            for k, v in (("true_cfg_scale", self.true_cfg_scale), ("max_sequence_length", self.max_sequence_length))
            if v is not None
        }


@dataclass(frozen=True)
class Rendered:
    """One job's outcome: an image, or the reason there is none (e.g. out of memory alone)."""

    job: RenderJob
    image: Any | None
    seconds: float  # pipeline time per image of its batch
    batch_size: int  # images in the pipeline call that made it (pixels depend on it on CPU)
    error: str | None = None
    batch_index: int = 0  # its position in that call (pixels can depend on it too)


@dataclass
class LoadedModel:
    resolved: ResolvedModel
    pipeline: Any
    folder: Path | None
    revision: str | None
    weights_sha256: str
    device: str
    family: Family | None = None
    options: dict[str, Any] = field(default_factory=dict)  # dtype and speed options in use
    _img2img: Any = None

    def image_to_image(self) -> Any:
        """The same components as an image-to-image pipeline (no second copy of the weights)."""
        if self._img2img is None:
            from diffusers import AutoPipelineForImage2Image

            self._img2img = AutoPipelineForImage2Image.from_pipe(self.pipeline)
            self._img2img.set_progress_bar_config(disable=True)
        return self._img2img

    def render(self, jobs: list[RenderJob], batch_size: int, *, pad: bool = False) -> Iterator[Rendered]:
        return render(self, jobs, batch_size, pad=pad)

    def environment(self) -> dict[str, Any]:
        return {
            "scheduler": scheduler_record(self.pipeline),
            "versions": library_versions(),
            "options": {
                "family": self.family.name if self.family else None,
                **self.options,
                **(self.family.fixed_arguments if self.family else {}),
            },
        }

    def describe(self) -> dict[str, Any]:
        entry = self.resolved.entry
        return {
            "id": self.resolved.id,
            "name": entry.name or self.resolved.id,
            "revision": self.revision,
            "weights_sha256": self.weights_sha256,
            "pipeline_class": type(self.pipeline).__name__,
            "licence": entry.licence,
            "commercial_use": entry.commercial_use,
            "licence_source": entry.licence_source,
            "test_model": entry.test_model,
        }


class LoadedRenderer(Protocol):
    """An image model in memory, ready to render jobs (LoadedModel for diffusers)."""

    device: str

    def render(self, jobs: list[RenderJob], batch_size: int, *, pad: bool = False) -> Iterator[Rendered]: ...

    def environment(self) -> dict[str, Any]:
        """What else decides the pixels: {"scheduler": {class, config}, "versions": {library: version},
        "options": {family, dtype, speed options in use}} ("options" may be omitted)."""

    def describe(self) -> dict[str, Any]:
        """The model's record: id, name, revision, weights_sha256, pipeline_class, licence fields."""


class Renderer(Protocol):
    """What the render stage needs from an image model, as ChatModel is for text: diffusers in
    production (DiffusersRenderer); a benchmark or a test hands its own to `open_batch`."""

    def weights_id(self) -> str:
        """Names the weights (SHA-256 of their files, or the pinned revision): part of every image key."""

    def load(self, gpu: int = 0) -> LoadedRenderer:
        """Load once, on GPU number `gpu` when there are GPUs; called only when something must render."""


@dataclass(frozen=True)
class DiffusersRenderer:
    """The brand's configured diffusers model with its render options (scheduler, memory)."""

    model: ResolvedModel
    digest_cache: Path | None = None
    scheduler: str | None = None
    cpu_offload: bool = False
    attention_slicing: bool = False
    speed: SpeedOptions = SpeedOptions()

    def weights_id(self) -> str:
        folder = model_folder(self.model)
        return weights_sha256(folder, self.digest_cache) if folder else self.model.entry.revision or "unpinned"

    def load(self, gpu: int = 0) -> LoadedModel:
        return load_model(
            self.model,
            self.digest_cache,
            scheduler=self.scheduler,
            cpu_offload=self.cpu_offload,
            attention_slicing=self.attention_slicing,
            gpu=gpu,
            speed=self.speed,
        )


def pick_device(gpu: int = 0) -> str:
    """CUDA (GPU number `gpu`), then Apple MPS, then CPU (where any number of workers share it).
    A worker pinned to one GPU by CUDA_VISIBLE_DEVICES (a Dask worker per GPU) uses that one."""
    import torch

    from ..settings import pinned_gpu

    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        if count == 1 and pinned_gpu():
            return "cuda:0"
        if not 0 <= gpu < count:
            raise SetupError(
                f"render worker {gpu + 1} needs GPU number {gpu}, but this machine has {count} "
                f"GPU(s): start at most {count} render worker(s) per machine, or pin each worker "
                "to its GPU with CUDA_VISIBLE_DEVICES"
            )
        return f"cuda:{gpu}"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(device: str, family: Family | None, asked: str = "auto") -> Any:
    """float32 on CPU; on a GPU the family's half precision (bf16 for FLUX and SD 3, whose
    activations overflow fp16), unless the brand asks for one."""
    import torch

    if asked != "auto":
        return getattr(torch, asked)
    if device == "cpu":
        return torch.float32
    if device.startswith("cuda") and family and family.gpu_dtype == "bfloat16" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def _weight_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES)


def weights_sha256(folder: Path, cache_file: Path | None = None) -> str:
    """One digest over every weight file (relative path + content), in a stable order.

    Hashing an SDXL checkpoint reads ~7 GB, so with `cache_file` the digest is reused while
    every file keeps its size and modification time.
    """
    stats = [[str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns] for p in _weight_files(folder)]
    cache: dict = {}
    if cache_file and cache_file.is_file():
        try:
            cache = json.loads(cache_file.read_text())
        except json.JSONDecodeError:
            cache = {}
    entry = cache.get(str(folder.resolve()))
    if entry and entry["stats"] == stats:
        return entry["sha256"]
    digest = hashlib.sha256()
    for path in _weight_files(folder):
        digest.update(str(path.relative_to(folder)).encode())
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    if cache_file:
        cache[str(folder.resolve())] = {"stats": stats, "sha256": digest.hexdigest()}
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        cache_file.write_text(json.dumps(cache))
    return digest.hexdigest()


def model_folder(resolved: ResolvedModel) -> Path | None:
    """The folder holding the weights: the configured one, or the hub cache's snapshot."""
    local = Path(resolved.load_from)
    return local if local.is_dir() else _hub_snapshot(resolved)


def load_model(
    resolved: ResolvedModel,
    digest_cache: Path | None = None,
    *,
    scheduler: str | None = None,
    scheduler_config: dict | None = None,
    cpu_offload: bool = False,
    attention_slicing: bool = False,
    gpu: int = 0,
    speed: SpeedOptions = SpeedOptions(),
) -> LoadedModel:
    """`from_pretrained` on the resolved folder or hub id, then the scheduler asked for (by
    class name, optionally with a recorded config), the best device with the memory options,
    and the speed options asked for."""
    import diffusers
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.disable_progress_bar()
    family = family_of(resolved)
    device = pick_device(gpu)
    dtype = pick_dtype(device, family, speed.dtype)
    pipeline_class = getattr(diffusers, resolved.entry.pipeline, None)
    if not isinstance(pipeline_class, type) or not hasattr(pipeline_class, "from_pretrained"):
        raise ConfigError(
            f"model '{resolved.id}': pipeline {resolved.entry.pipeline!r} is not a diffusers "
            f"pipeline class (diffusers {diffusers.__version__}); use e.g. StableDiffusionPipeline, "
            "StableDiffusionXLPipeline, AutoPipelineForText2Image or DiffusionPipeline"
        )
    kwargs: dict[str, Any] = {"dtype": dtype}
    if resolved.entry.revision:
        kwargs["revision"] = resolved.entry.revision
    try:
        pipeline = pipeline_class.from_pretrained(resolved.load_from, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(
            f"cannot load model '{resolved.id}' from {resolved.load_from}: "
            f"{str(exc).splitlines()[0]}. If the folder is damaged, delete it and "
            "rebuild or re-download it (`estampille models build-tiny` for the "
            "test model)."
        ) from None
    pipeline.set_progress_bar_config(disable=True)
    if scheduler:
        scheduler_class = getattr(diffusers, scheduler)
        config = _scheduler_config(scheduler_config) if scheduler_config else pipeline.scheduler.config
        pipeline.scheduler = scheduler_class.from_config(config)
    if attention_slicing:
        pipeline.enable_attention_slicing()
    if cpu_offload and device.startswith("cuda"):
        pipeline.enable_model_cpu_offload(gpu_id=int(device.split(":")[1]))  # sub-models on the GPU only while they run
    else:
        pipeline.to(device)
    apply_speed_options(pipeline, speed, resolved.id)
    folder = model_folder(resolved)
    revision = resolved.entry.revision or (folder.name if folder and folder.parent.name == "snapshots" else None)
    return LoadedModel(
        resolved=resolved,
        pipeline=pipeline,
        folder=folder,
        revision=revision,
        weights_sha256=weights_sha256(folder, digest_cache) if folder else "unknown",
        device=device,
        family=family,
        options={"dtype": str(dtype).removeprefix("torch."), **speed.in_use()},
    )


def denoiser(pipeline: Any) -> Any:
    """The UNet or the diffusion transformer: the part that runs at every step."""
    return getattr(pipeline, "unet", None) or pipeline.transformer


def apply_speed_options(pipeline: Any, speed: SpeedOptions, model_id: str) -> None:
    """Apply what the brand turned on; an option this pipeline cannot take is an error naming it."""
    import torch

    model = denoiser(pipeline)
    if speed.fuse_qkv:
        if not hasattr(model, "fuse_qkv_projections"):
            raise ConfigError(
                f"render.fuse_qkv: the denoiser of '{model_id}' ({type(model).__name__}) has no "
                "fused projections in this diffusers version: turn fuse_qkv off"
            )
        model.fuse_qkv_projections()
    if speed.channels_last:
        if not hasattr(pipeline, "unet"):
            raise ConfigError(
                f"render.channels_last speeds up UNet convolutions; '{model_id}' is a diffusion "
                "transformer (no UNet): turn channels_last off"
            )
        pipeline.unet.to(memory_format=torch.channels_last)
        pipeline.vae.to(memory_format=torch.channels_last)
    if speed.vae_slicing:
        pipeline.vae.enable_slicing()
    if speed.vae_tiling:
        pipeline.vae.enable_tiling()
    if speed.compile:
        compiled = torch.compile(model, mode=speed.compile, fullgraph=False)
        setattr(pipeline, "unet" if hasattr(pipeline, "unet") else "transformer", compiled)


def _hub_snapshot(resolved: ResolvedModel) -> Path | None:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(resolved.load_from, revision=resolved.entry.revision, local_files_only=True))
    except Exception:  # the weights hash is then "unknown", which the record says plainly
        return None


def library_versions() -> dict[str, str]:
    import diffusers
    import torch
    import transformers

    return {"diffusers": diffusers.__version__, "torch": torch.__version__, "transformers": transformers.__version__}


NON_FINITE = {"inf": float("inf"), "-inf": float("-inf"), "nan": float("nan")}


def scheduler_record(pipeline: Any) -> dict[str, Any]:
    """Class and config of the scheduler, JSON-safe: infinities (DPM-Solver's lambda_min_clipped)
    are kept as the strings "inf"/"-inf" since JSON has no number for them."""
    config = {k: v for k, v in dict(pipeline.scheduler.config).items() if not k.startswith("_")}
    for name, value in config.items():
        if isinstance(value, float) and not math.isfinite(value):
            config[name] = str(value)
    return {"class": type(pipeline.scheduler).__name__, "config": config}


def _scheduler_config(recorded: dict) -> dict:
    return {k: NON_FINITE.get(v, v) if isinstance(v, str) else v for k, v in recorded.items()}


def render(loaded: LoadedModel, jobs: list[RenderJob], batch_size: int, *, pad: bool = False) -> Iterator[Rendered]:
    """Render every job, `batch_size` images per pipeline call.

    Jobs are grouped by their shared settings; each image gets its own seeded CPU generator.
    On CPU an image's pixels depend on the batch *size* and, for some sizes (3 of 2, 3, 4, 8 on
    these machines), on the image's *position* in the batch (the matrix kernels block rows by
    both), but not on the other images. So a record keeps size and position, and re-creating an
    image renders it with `pad=True`: one call per image, filled up to the recorded size with
    copies of itself, the image taken from its recorded position (tests/test_render.py and
    tests/test_families.py show these facts).

    Out of memory, a batch is split in two and each half tried again; an image that does not
    fit alone comes back with its error, and the others carry on.
    """
    groups: dict[tuple, list[RenderJob]] = {}
    for job in jobs:
        groups.setdefault(
            (
                job.steps,
                job.guidance,
                job.width,
                job.height,
                job.reference is not None,
                job.strength,
                job.true_cfg_scale,
                job.max_sequence_length,
            ),
            [],
        ).append(job)
    for group in groups.values():
        step = 1 if pad else batch_size
        for start in range(0, len(group), step):
            chunk = group[start : start + step]
            yield from _render_chunk(loaded, chunk, batch_size if pad else len(chunk), can_split=not pad)


def _render_chunk(loaded: LoadedModel, chunk: list[RenderJob], size: int, can_split: bool) -> list[Rendered]:
    import torch

    padded = chunk + [chunk[-1]] * (size - len(chunk))
    first = padded[0]
    # Re-creating (one job padded with itself): its image is the one at its recorded position.
    positions = [min(first.batch_index, size - 1)] if len(chunk) == 1 and size > 1 else range(len(chunk))
    arguments: dict[str, Any] = dict(
        prompt=[j.prompt for j in padded],
        num_inference_steps=first.steps,
        guidance_scale=first.guidance,
        generator=[torch.Generator("cpu").manual_seed(j.seed) for j in padded],
    )
    arguments.update({**(loaded.family.fixed_arguments if loaded.family else {}), **first.family_arguments()})
    if any(j.negative_prompt for j in padded) or loaded.family is None or loaded.family.negative_prompt == "cfg":
        arguments["negative_prompt"] = [j.negative_prompt for j in padded]
    pipeline = loaded.pipeline
    if first.reference is not None:
        from PIL import Image

        pipeline = loaded.image_to_image()
        reference = first.reference  # a batch is one mode: every job in it has a reference
        arguments.update(
            image=[Image.open(j.reference or reference).convert("RGB").resize((j.width, j.height)) for j in padded],
            strength=first.strength,
        )
        if _takes(pipeline, "width"):  # SD 3 and FLUX image-to-image size from width/height, not the image
            arguments.update(width=first.width, height=first.height)
    else:
        arguments.update(width=first.width, height=first.height)
    started = time.perf_counter()
    try:
        with torch.inference_mode():
            images = pipeline(**arguments).images
    except (torch.OutOfMemoryError, RuntimeError) as exc:
        if not _out_of_memory(exc):
            raise
        if loaded.device.startswith("cuda"):
            torch.cuda.empty_cache()
        if can_split and len(chunk) > 1:
            half = len(chunk) // 2
            return _render_chunk(loaded, chunk[:half], half, can_split) + _render_chunk(
                loaded, chunk[half:], len(chunk) - half, can_split
            )
        return [
            Rendered(job, None, 0.0, size, f"out of memory at batch size {size}: {str(exc).splitlines()[0]}")
            for job in chunk
        ]
    per_image = (time.perf_counter() - started) / len(padded)
    return [
        Rendered(job, images[i], per_image, len(padded), batch_index=i) for job, i in zip(chunk, positions, strict=True)
    ]


def _takes(pipeline: Any, argument: str) -> bool:
    import inspect

    return argument in inspect.signature(pipeline.__call__).parameters


def _out_of_memory(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()
