"""Which model a brand may render with: registry lookup, local-folder resolution, licence gate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from ..errors import ConfigError, LicenceError, ModelNotFoundError
from ..yaml_source import load_yaml

REGISTRY_FILE = Path(__file__).with_name("models.yaml")
TINY_ID = "builtin:tiny-sd"


class ModelDefaults(BaseModel):
    """A model's own render defaults, over its family's (e.g. SDXL-Turbo: 1 step, guidance 0, 512 px)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: int | None = None
    guidance: float | None = None
    size: int | None = None
    max_sequence_length: int | None = None
    guidance_free: bool = False  # distilled without a guidance input (FLUX.1-schnell): guidance is ignored


class ModelEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None  # what people call it (XMP AISystemUsed); the id when unset
    source: Literal["hub", "tiny", "local"] = "hub"
    family: Literal["sd15", "sdxl", "sd3", "flux", "pixart"] | None = None  # render/families.py
    defaults: ModelDefaults = ModelDefaults()
    pipeline: str = "DiffusionPipeline"
    revision: str | None = None
    licence: str
    commercial_use: Literal["yes", "no", "conditional"]
    licence_source: str
    test_model: bool = False


class ResolvedModel(BaseModel):
    """A model id from the brand file, resolved to what from_pretrained will load."""

    model_config = ConfigDict(frozen=True)

    id: str
    load_from: str  # local folder or hub id
    entry: ModelEntry


def load_registry(home: Path | None = None) -> dict[str, ModelEntry]:
    raw = load_yaml(REGISTRY_FILE)
    user_file = home / "models.yaml" if home else None
    if user_file and user_file.is_file():
        raw.update(load_yaml(user_file) or {})
    entries = {}
    for model_id, fields in raw.items():
        # YAML 1.1 reads a bare yes/no as a boolean; the registry means the words.
        if isinstance(fields.get("commercial_use"), bool):
            fields = {**fields, "commercial_use": "yes" if fields["commercial_use"] else "no"}
        try:
            entries[model_id] = ModelEntry.model_validate(fields)
        except ValueError as exc:
            raise ConfigError(f"model registry entry '{model_id}': {exc}") from None
    return entries


def tiny_folder(model_id: str, models_dir: Path) -> Path:
    """Where `estampille models build-tiny` puts the tiny build a `builtin:tiny-…` id names."""
    return models_dir / model_id.removeprefix("builtin:")


def resolve_model(model_id: str, models_dir: Path, home: Path | None = None) -> ResolvedModel:
    """Find the entry and the folder for `model_id`; a local folder must hold model_index.json."""
    registry = load_registry(home)
    if model_id in registry:
        entry = registry[model_id]
        if entry.source == "tiny":
            folder = tiny_folder(model_id, models_dir)
            _require_folder(
                folder, f"run `estampille models build-tiny --family {entry.family}` to build the tiny test model"
            )
            return ResolvedModel(id=model_id, load_from=str(folder), entry=entry)
        local = models_dir / model_id
        return ResolvedModel(id=model_id, load_from=str(local) if local.is_dir() else model_id, entry=entry)
    path = Path(model_id).expanduser()
    if path.is_absolute() or model_id.startswith("."):
        _require_folder(
            path,
            "point render.model in brand.yaml at a folder saved with "
            "save_pretrained, or use a model id from the registry",
        )
        entry_id = path.name
        marker = path / "estampille_model.json"  # a tiny build names its registry entry
        if entry_id not in registry and marker.is_file():
            entry_id = json.loads(marker.read_text(encoding="utf-8")).get("registry_id", "")
        if entry_id in registry:
            return ResolvedModel(id=model_id, load_from=str(path), entry=registry[entry_id])
    raise LicenceError(
        f"model '{model_id}' is not in the model registry, so its licence is unknown. Add it to "
        f"{home / 'models.yaml' if home else 'ESTAMPILLE_HOME/models.yaml'} with its licence and "
        f"commercial_use, or choose one of: {', '.join(sorted(registry))}"
    )


def _require_folder(folder: Path, fix: str) -> None:
    if not (folder / "model_index.json").is_file():
        what = "has no model_index.json" if folder.is_dir() else "does not exist"
        raise ModelNotFoundError(f"model folder {folder} {what}: {fix}")


def check_licence(
    model: ResolvedModel, licence_policy: str, accepted: list[str], registry: dict[str, ModelEntry]
) -> None:
    """A commercial brand cannot render with a model whose licence forbids commercial use."""
    if licence_policy != "commercial":
        return
    use = model.entry.commercial_use
    if use == "yes" or (use == "conditional" and model.entry.licence in accepted):
        return
    allowed = sorted(m for m, e in registry.items() if e.commercial_use == "yes" and not e.test_model)
    why = (
        "forbids commercial use"
        if use == "no"
        else "allows commercial use only under conditions the brand has not accepted "
        "(list it in render.accepted_licences once legal has checked them)"
    )
    raise LicenceError(
        f"model '{model.id}' has licence {model.entry.licence}, which {why}; "
        f"the brand's licence_policy is commercial. Allowed: {', '.join(allowed)}"
    )
