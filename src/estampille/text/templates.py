"""Prompt templates are files (editable, versioned by content hash), not strings in code."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from string import Template

TEMPLATE_DIR = Path(__file__).parent / "templates"


FALLBACK_LANGUAGE = "en"


def template_name(stage: str, language: str | None = None) -> str:
    """`<stage>.<language>` when that file exists, else the English one, else `<stage>`."""
    for name in ((f"{stage}.{language}", f"{stage}.{FALLBACK_LANGUAGE}") if language else ()) + (stage,):
        if (TEMPLATE_DIR / f"{name}.txt").is_file():
            return name
    raise FileNotFoundError(f"no prompt template for stage '{stage}' in {TEMPLATE_DIR}")


@functools.lru_cache(maxsize=None)
def _template(name: str) -> tuple[Template, str]:
    text = (TEMPLATE_DIR / f"{name}.txt").read_text(encoding="utf-8")
    return Template(text), hashlib.sha256(text.encode()).hexdigest()[:12]


def render(stage: str, language: str | None = None, **values: object) -> str:
    name = template_name(stage, language)
    return _template(name)[0].safe_substitute({k: str(v) for k, v in values.items()}).strip()


def version(*stages: str, language: str | None = None) -> str:
    """A short hash over the templates in use: part of every draft's cache key and record."""
    names = [template_name(s, language) for s in stages]
    return hashlib.sha256("".join(_template(n)[1] for n in names).encode()).hexdigest()[:12]
