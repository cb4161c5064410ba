"""Prompt templates are files, one per stage and language, versioned by their content.

A brand can override any of them: a file of the same name in `<brand folder>/templates/` wins
over the built-in one, language by language.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from string import Template

TEMPLATE_DIR = Path(__file__).parent / "templates"
FALLBACK_LANGUAGE = "en"


def template_path(stage: str, language: str | None = None, brand_dir: Path | None = None) -> Path:
    """The file for `stage` in `language`: the brand's, then the built-in, then English, then plain."""
    names = ([f"{stage}.{language}"] if language else []) + [f"{stage}.{FALLBACK_LANGUAGE}", stage]
    folders = ([brand_dir / "templates"] if brand_dir else []) + [TEMPLATE_DIR]
    for name in names:
        for folder in folders:
            path = folder / f"{name}.txt"
            if path.is_file():
                return path
    raise FileNotFoundError(f"no prompt template for stage '{stage}' in {', '.join(map(str, folders))}")


@functools.cache
def _template(path: Path, mtime_ns: int) -> tuple[Template, str]:
    text = path.read_text(encoding="utf-8")
    return Template(text), hashlib.sha256(text.encode()).hexdigest()[:12]


def _load(path: Path) -> tuple[Template, str]:
    return _template(path, path.stat().st_mtime_ns)


def render(stage: str, language: str | None = None, brand_dir: Path | None = None, **values: object) -> str:
    template, _ = _load(template_path(stage, language, brand_dir))
    return template.safe_substitute({k: str(v) for k, v in values.items()}).strip()


def version(*stages: str, language: str | None = None, brand_dir: Path | None = None) -> str:
    """A short hash over the templates in use: part of every draft's cache key and record."""
    digests = [_load(template_path(s, language, brand_dir))[1] for s in stages]
    return hashlib.sha256("".join(digests).encode()).hexdigest()[:12]
