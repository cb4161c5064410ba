"""Refresh a brand's reference index nightly, so the weekly batch only hashes new files."""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from estampille.brand import load_brand
from estampille.lookalike.brand_index import refresh_brand_index
from estampille.paths import lookalike_index_folder
from estampille.settings import Settings


@flow(name="competitor-index-refresh", persist_result=False)
def competitor_index_refresh(brand: str, out: str | None = None) -> dict:
    settings = Settings.from_env(out=out)
    bundle = load_brand(brand)
    store, skipped = refresh_brand_index(
        lookalike_index_folder(settings.out, bundle.slug), bundle.competitor_folders(), []
    )
    indexed = store.count()
    store.close()
    listing = "".join(f"\n- `{source}`: {reason}" for source, reason in skipped) or " none"
    create_markdown_artifact(
        f"# {bundle.brand.name}: {indexed} reference images indexed\n\nSkipped:{listing}", key="competitor-index"
    )
    return {"indexed": indexed, "skipped": len(skipped)}
