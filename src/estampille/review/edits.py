"""A designer's retouch made outside Estampille (Photoshop, Affinity...) becomes the image's
current version: labelled compositeWithTrainedAlgorithmicMedia, signed with the render as its
parent ingredient, recorded in the ledger. Review and export then use it."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

from ..errors import EstampilleError
from ..images import open_checked
from ..keys import edit_key
from ..ledger import Ledger
from ..paths import inside, run_folder
from ..provenance.c2pa_manifest import ManifestSigner, edit_manifest, read_manifest
from ..provenance.identity import SignerIdentity
from ..provenance.xmp import COMPOSITE_TRAINED, XmpFields, png_with_xmp, xmp_packet
from ..records import Kind, Retouch
from .week import WeekState


def import_edit(
    ledger: Ledger, run_root: Path, image_id: str, edited: Path, editor: str, identity: SignerIdentity
) -> Retouch:
    """Record a retouch made outside Estampille as the image's current file: signed with the
    current file as its parent ingredient, labelled compositeWithTrainedAlgorithmicMedia, so
    review and publishing use it and the audit traces it back to the render."""
    render_event = ledger.get(image_id)
    if render_event is None or render_event.kind != Kind.RENDER_CREATED:
        raise EstampilleError(f"no render {image_id} in the ledger at {ledger.safe_url}")
    brand, week, slot_id = render_event.place()
    run_dir = run_folder(run_root, brand, week)
    parent = WeekState.load(ledger, brand, week).current.get(image_id)
    if parent is None:
        raise EstampilleError(f"render {image_id} was never signed: run the batch to the end first")
    try:
        image = open_checked(edited).convert("RGB")
    except (OSError, ValueError) as exc:
        raise EstampilleError(f"{edited}: {exc}") from None
    parent_file = inside(run_dir, parent.file)
    parent_bytes = parent_file.read_bytes()
    sidecar = json.loads(inside(run_dir, f"images/{image_id}.json").read_text())
    fields = replace(XmpFields(**sidecar["xmp"]), digital_source_type=COMPOSITE_TRAINED)
    unsigned = png_with_xmp(image, xmp_packet(fields))
    manifest = edit_manifest(
        f"{image_id}-edit.png", COMPOSITE_TRAINED, f"Retouched outside Estampille by {editor} ({edited.name})"
    )
    signer = ManifestSigner(identity)
    try:
        signed = signer.sign(
            unsigned,
            "image/png",
            manifest,
            [({"title": parent_file.name, "relationship": "parentOf", "label": "render"}, "image/png", parent_bytes)],
        )
    finally:
        signer.close()
    report = read_manifest(signed, "image/png", identity.trust_anchor_pem)
    digest = hashlib.sha256(signed).hexdigest()
    file = Path("images") / f"{image_id}.edit-{digest[:12]}.png"
    inside(run_dir, str(file)).write_bytes(signed)
    payload = {
        "image_id": image_id,
        "file": str(file),
        "sha256": digest,
        "editor": editor,
        "source_name": edited.name,
        "digital_source_type": COMPOSITE_TRAINED,
        "c2pa_state": report.state,
        "parent_sha256": parent.sha256,
        "signer": identity.subject,
    }
    ledger.append(
        Kind.EDIT_IMPORTED,
        edit_key(image_id, digest),
        payload,
        brand=brand,
        week=week,
        subject=slot_id,
    )
    return Retouch.model_validate(payload)
