"""Load a diffusers pipeline once per batch and render seeded images in batches.

Everything needed to re-create an image is returned with it: model id, revision, SHA-256
of the weight files, pipeline and scheduler, steps, guidance, size, seed, library versions,
device. On CPU, the same record gives the same pixels.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ModelNotFoundError
from .registry import ResolvedModel

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".gguf")


@dataclass(frozen=True)
class RenderJob:
    key: str
    prompt: str
    negative_prompt: str
    seed: int
    steps: int
    guidance: float
    width: int
    height: int


@dataclass
class LoadedModel:
    resolved: ResolvedModel
    pipeline: Any
    folder: Path | None
    revision: str | None
    weights_sha256: str
    device: str

    def describe(self) -> dict[str, Any]:
        entry = self.resolved.entry
        return {"id": self.resolved.id, "revision": self.revision, "weights_sha256": self.weights_sha256,
                "pipeline_class": type(self.pipeline).__name__, "licence": entry.licence,
                "commercial_use": entry.commercial_use, "licence_source": entry.licence_source,
                "test_model": entry.test_model}


def pick_device() -> tuple[str, Any]:
    import torch

    if torch.cuda.is_available():
        return "cuda", torch.float16
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps", torch.float16
    return "cpu", torch.float32


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


def load_model(resolved: ResolvedModel, digest_cache: Path | None = None) -> LoadedModel:
    """`from_pretrained` on the resolved folder or hub id, then move to the best device."""
    import diffusers
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.disable_progress_bar()
    device, dtype = pick_device()
    pipeline_class = getattr(diffusers, resolved.entry.pipeline, diffusers.DiffusionPipeline)
    kwargs: dict[str, Any] = {"dtype": dtype}
    if resolved.entry.revision:
        kwargs["revision"] = resolved.entry.revision
    try:
        pipeline = pipeline_class.from_pretrained(resolved.load_from, **kwargs)
    except (OSError, ValueError, EnvironmentError) as exc:
        raise ModelNotFoundError(f"cannot load model '{resolved.id}' from {resolved.load_from}: "
                                 f"{str(exc).splitlines()[0]}. If the folder is damaged, delete it and "
                                 "rebuild or re-download it (`estampille models build-tiny` for the "
                                 "test model).") from None
    pipeline.set_progress_bar_config(disable=True)
    pipeline.to(device)
    folder = model_folder(resolved)
    revision = resolved.entry.revision or (folder.name if folder and folder.parent.name == "snapshots" else None)
    return LoadedModel(resolved=resolved, pipeline=pipeline, folder=folder, revision=revision,
                       weights_sha256=weights_sha256(folder, digest_cache) if folder else "unknown", device=device)


def _hub_snapshot(resolved: ResolvedModel) -> Path | None:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(resolved.load_from, revision=resolved.entry.revision,
                                      local_files_only=True))
    except Exception:   # the weights hash is then "unknown", which the record says plainly
        return None


def library_versions() -> dict[str, str]:
    import diffusers
    import torch
    import transformers

    return {"diffusers": diffusers.__version__, "torch": torch.__version__,
            "transformers": transformers.__version__}


def scheduler_record(pipeline: Any) -> dict[str, Any]:
    config = dict(pipeline.scheduler.config)
    return {"class": type(pipeline.scheduler).__name__,
            "config": {k: v for k, v in config.items() if not k.startswith("_")}}


def render(loaded: LoadedModel, jobs: list[RenderJob], batch_size: int, *,
           pad: bool = False) -> Iterator[tuple[RenderJob, Any, float, int]]:
    """Yield (job, PIL image, seconds per image, size of the batch it was rendered in).

    Jobs are grouped by their shared settings; each image gets its own seeded CPU generator.
    On CPU an image's pixels depend on the batch *size* (the matrix kernels change with it)
    but not on the other images in the batch, so a record keeps that size, and re-creating
    an image renders it with `pad=True`: its chunk is filled up to the recorded size with
    copies of itself (tests/test_render.py shows both facts).
    """
    import torch

    groups: dict[tuple, list[RenderJob]] = {}
    for job in jobs:
        groups.setdefault((job.steps, job.guidance, job.width, job.height), []).append(job)
    for (steps, guidance, width, height), group in groups.items():
        for start in range(0, len(group), batch_size):
            chunk = group[start:start + batch_size]
            padded = chunk + [chunk[-1]] * (batch_size - len(chunk)) if pad else chunk
            started = time.perf_counter()
            with torch.inference_mode():
                images = loaded.pipeline(
                    prompt=[j.prompt for j in padded],
                    negative_prompt=[j.negative_prompt for j in padded],
                    num_inference_steps=steps, guidance_scale=guidance, width=width, height=height,
                    generator=[torch.Generator("cpu").manual_seed(j.seed) for j in padded],
                ).images
            per_image = (time.perf_counter() - started) / len(padded)
            yield from ((job, image, per_image, len(padded)) for job, image in zip(chunk, images))
