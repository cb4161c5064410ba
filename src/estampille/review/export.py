"""Publish: export only approved items whose provenance verifies, each signed once more with the
human decision in its manifest; refuse everything else with a reason per item.

The export folder holds, per platform, the images, the captions (with the disclosure line, and a
reviewer's edit when there was one), the alt texts, and the bulk-upload files of the schedulers the
brand uses (schedulers.py).
"""

from __future__ import annotations

import hashlib
import io
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from .. import keys
from ..brand import BrandBundle, posts_in_week
from ..keys import export_key
from ..ledger import Ledger
from ..paths import OutsideFolder, file_sha256, inside
from ..provenance.c2pa_manifest import ManifestSigner, approval_manifest, read_manifest
from ..provenance.identity import SignerIdentity
from ..provenance.sign import document_id
from ..provenance.xmp import XmpFields, png_with_xmp, read_xmp, xmp_packet
from ..records import Export, Kind, LookalikeCheck, Provenance, Retouch, ReviewDecision
from .schedulers import ExportRow, write_all
from .week import WeekState, state_of


@dataclass
class ExportReport:
    folder: Path
    exported: list[dict] = field(default_factory=list)
    refused: list[dict] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)  # the schedulers' bulk-upload files
    warnings: list[str] = field(default_factory=list)  # what a scheduler will refuse or needs by hand


def publish(ledger: Ledger, bundle: BrandBundle, week: str, run_dir: Path, identity: SignerIdentity) -> ExportReport:
    """Export the week's approved, verified items to <run>/export/<platform>/; refuse the rest, each
    with its reason (in the report and export.json). Exporting again redoes nothing."""
    state = WeekState.load(ledger, bundle.slug, week)  # read once; everything below derives from it
    drafts, renders = list(state.drafts.values()), list(state.renders.values())
    signed, checks = state.current, state.checks
    report = ExportReport(run_dir / "export")
    signer: ManifestSigner | None = None
    rows: dict[str, list[ExportRow]] = {}
    for post in posts_in_week(bundle, week):
        slot_id = keys.slot_id(week, post.id)
        approved = {d.draft_id: state.decision(d.draft_id) for d in drafts if d.slot_id == slot_id}
        approved_drafts = [d for d in drafts if state_of(approved.get(d.draft_id)) == "approved"]
        if not approved_drafts:
            report.refused.append({"item": slot_id, "reason": "no approved text variant"})
            continue
        draft = max(approved_drafts, key=lambda d: _decided_at(approved[d.draft_id]))
        text = state.text_of(draft.draft_id)
        platform_dir = report.folder / post.platform
        images: list[dict] = []  # the export.created payloads of this post's images
        for render_record in (r for r in renders if r.slot_id == slot_id):
            image_id = render_record.image_id
            decision = state.decision(image_id)
            reason = _refusal(image_id, decision, signed.get(image_id), checks.get(image_id), run_dir, identity)
            if reason or decision is None:
                report.refused.append({"item": image_id, "slot": slot_id, "reason": reason})
                continue
            signer = signer or ManifestSigner(identity)
            target = platform_dir / f"{post.id}-{len(images) + 1}.png"
            images.append(
                _export_image(
                    ledger,
                    bundle.slug,
                    week,
                    slot_id,
                    signed[image_id],
                    (decision, state.decision_events[image_id][-1].payload),
                    run_dir,
                    target,
                    signer,
                    draft.alt_text,
                )
            )
        if not images:
            report.refused.append({"item": slot_id, "reason": "no approved, verified image"})
            continue
        platform_dir.mkdir(parents=True, exist_ok=True)
        (platform_dir / f"{post.id}.txt").write_text(text + "\n", encoding="utf-8")
        (platform_dir / f"{post.id}.alt.txt").write_text(draft.alt_text + "\n", encoding="utf-8")
        rows.setdefault(post.platform, []).append(
            ExportRow(post.id, post.date, post.time, text, tuple(Path(i["file"]).name for i in images))
        )
        report.exported.append(
            {"slot": slot_id, "platform": post.platform, "draft": draft.draft_id, "text": text, "images": images}
        )
    if signer:
        signer.close()
    # Hootsuite's, Sprout Social's and Agorapulse's bulk files, as brand.yaml `publish.schedulers` asks
    report.files, report.warnings = write_all(report.folder, week, rows, bundle.brand.publish)
    if report.exported or report.refused:
        report.folder.mkdir(parents=True, exist_ok=True)
        (report.folder / "export.json").write_text(
            json.dumps(
                {
                    "exported": report.exported,
                    "refused": report.refused,
                    "warnings": report.warnings,
                    "files": [str(f.relative_to(report.folder)) for f in report.files],
                },
                indent=2,
                ensure_ascii=False,
            )
        )
    return report


def _decided_at(decision: ReviewDecision | None) -> str:
    return decision.decided_at if decision else ""


def _refusal(
    image_id: str,
    decision: ReviewDecision | None,
    signed: Provenance | Retouch | None,
    check: LookalikeCheck | None,
    run_dir: Path,
    identity: SignerIdentity,
) -> str | None:
    """Why an image may not be exported, or None when it may."""
    if decision is None:
        return "pending review: nobody approved it"
    if decision.decision != "approved":
        return f"rejected by {decision.reviewer}" + (f": {decision.comment}" if decision.comment else "")
    if check and check.verdict == "lookalike" and not decision.lookalike_override:
        return "flagged as a lookalike and not overridden"
    if signed is None:
        return "never signed"
    try:
        path = inside(run_dir, signed.file)
    except OutsideFolder:
        return f"its record points outside the output folder ({signed.file!r}): refused"
    if not path.is_file():
        return f"signed file {signed.file} is missing"
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != signed.sha256:  # the bytes are needed below too
        return "signed file changed since it was signed"
    manifest = read_manifest(data, "image/png", identity.trust_anchor_pem)
    if manifest.state not in ("Trusted", "Valid") or manifest.failures:
        return f"C2PA manifest does not validate ({manifest.state}: {', '.join(manifest.failures) or 'no detail'})"
    if not read_xmp(data).get("Iptc4xmpExt:DigitalSourceType"):
        return "IPTC XMP (DigitalSourceType) is missing"
    return None


def _published_copy(
    run_dir: Path, signed: Provenance | Retouch, source: bytes, alt_text: str
) -> tuple[bytes, str | None]:
    """The pixels of the approved file with its XMP plus the published alt text, under a new
    instance id (the document id stays the image's). Files without a sidecar keep their bytes."""
    sidecar = run_dir / "images" / f"{signed.image_id}.json"
    if not sidecar.is_file():
        return source, None
    fields = json.loads(sidecar.read_text())["xmp"]
    instance_id = f"xmp:iid:{uuid.uuid4()}"
    fields.update(
        digital_source_type=signed.digital_source_type or fields["digital_source_type"],
        instance_id=instance_id,
        alt_text=alt_text.strip() or None,
        document_id=fields.get("document_id") or document_id(signed.image_id),
    )
    with Image.open(io.BytesIO(source)) as image:
        return png_with_xmp(image, xmp_packet(XmpFields(**fields))), instance_id


def _export_image(
    ledger: Ledger,
    brand: str,
    week: str,
    slot_id: str,
    signed: Provenance | Retouch,
    decision: tuple[ReviewDecision, dict],
    run_dir: Path,
    target: Path,
    signer: ManifestSigner,
    alt_text: str,
) -> dict:
    """Sign the approved image again, the human decision in the manifest and the alt text in its
    XMP; once per decision. `decision`: the decision, and its payload as recorded (the export's
    ledger key hashes those exact fields)."""
    approval, recorded = decision
    key = export_key(signed.image_id, recorded)
    done = ledger.get(key)
    if done and target.is_file() and file_sha256(target) == Export.of(done).sha256:
        return done.payload
    source = inside(run_dir, signed.file).read_bytes()
    labelled, instance_id = _published_copy(run_dir, signed, source, alt_text)
    ingredient = {"title": Path(signed.file).name, "relationship": "parentOf", "label": "generated"}
    data = signer.sign(
        labelled,
        "image/png",
        approval_manifest(target.name, approval, instance_id),
        [(ingredient, "image/png", source)],
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    payload = {
        "image_id": signed.image_id,
        "file": str(target.relative_to(run_dir)),
        "sha256": hashlib.sha256(data).hexdigest(),
        "reviewer": approval.reviewer,
        "decided_at": approval.decided_at,
    }
    # A re-export after a lost file gets its own row (the bytes differ: signatures are not repeatable).
    key = key if done is None else export_key(signed.image_id, recorded, payload["sha256"])
    ledger.append(Kind.EXPORT_CREATED, key, payload, brand=brand, week=week, subject=slot_id)
    return payload
