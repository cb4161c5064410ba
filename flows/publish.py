"""Export a week's approved, verified items (the publish gate), as a deployment people can trigger."""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_table_artifact

from estampille.brand import load_brand
from estampille.ledger import Ledger
from estampille.paths import run_folder
from estampille.provenance.identity import from_settings as signer_identity
from estampille.review.export import publish as export
from estampille.settings import Settings


@flow(name="publish", persist_result=False)
def publish(brand: str, week: str, out: str | None = None) -> dict:
    settings = Settings.from_env(out=out)
    bundle = load_brand(brand)
    ledger = Ledger(settings.ledger_url)
    try:
        report = export(ledger, bundle, week, run_folder(settings.out, bundle.slug, week), signer_identity(settings))
    finally:
        ledger.close()
    create_table_artifact(
        [{"item": r["item"], "refused because": r["reason"]} for r in report.refused]
        or [{"item": "-", "refused because": "nothing refused"}],
        key="publish-refusals",
    )
    return {"folder": str(report.folder), "exported": len(report.exported), "refused": len(report.refused)}
