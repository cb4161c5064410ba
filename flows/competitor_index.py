"""Refresh a brand's competitor fingerprints daily, so the weekly batch only hashes new files."""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from estampille.brand import load_brand
from estampille.lookalike.index import index_folders
from estampille.settings import Settings


@flow(name="competitor-index-refresh", persist_result=False)
def competitor_index_refresh(brand: str, out: str | None = None) -> dict:
    settings = Settings.from_env(out=out)
    bundle = load_brand(brand)
    index = index_folders(bundle.competitor_folders(), settings.out / bundle.slug / "competitor-hashes.json")
    skipped = "".join(f"\n- `{path}`: {reason}" for path, reason in index.skipped) or " none"
    create_markdown_artifact(f"# {bundle.brand.name}: {len(index.references)} competitor images indexed\n\n"
                             f"Skipped:{skipped}", key="competitor-index")
    return {"indexed": len(index.references), "skipped": len(index.skipped)}
