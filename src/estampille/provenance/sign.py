"""Label and sign one render: IPTC XMP first (so the C2PA hard binding covers it), then a signed
C2PA manifest, then a JSON sidecar with the whole record. The XMP and the manifest say the same
things: one source type, one instance id, one data-mining policy, the model's name and version."""

from __future__ import annotations

import hashlib
import io
import json
import mimetypes
import secrets
import uuid
from pathlib import Path

from PIL import Image

from ..errors import EstampilleError
from ..paths import inside
from ..records import Provenance, Render
from . import soft_binding, watermark
from .c2pa_manifest import ManifestSigner, generation_manifest, read_manifest
from .identity import SignerIdentity
from .xmp import COMPOSITE_TRAINED, TRAINED, XmpFields, png_with_xmp, xmp_packet


def document_id(image_id: str) -> str:
    """One XMP DocumentID per image id, the same for every later version of it (export, retouch)."""
    return f"xmp.did:{uuid.uuid5(uuid.NAMESPACE_URL, f'estampille:{image_id}')}"


def xmp_fields(render: Render, rights, instance_id: str) -> XmpFields:
    model = render.model
    # Image-to-image mixes a human-made input with the model's output: IPTC calls that a composite.
    source_type = COMPOSITE_TRAINED if render.mode == "image-to-image" else TRAINED
    version = model["revision"] or f"weights sha256:{model['weights_sha256']}"
    return XmpFields(
        digital_source_type=source_type,
        ai_system=model.get("name") or model["id"],
        ai_system_version=version,
        ai_prompt=render.prompt if rights.prompt_disclosure == "full" else None,
        creator=rights.creator,
        credit_line=rights.credit_line,
        copyright_notice=rights.copyright_notice,
        web_statement=rights.web_statement,
        licensor_name=rights.licensor_name,
        licensor_url=rights.licensor_url,
        data_mining=rights.data_mining,
        instance_id=instance_id,
        document_id=document_id(render.image_id),
    )


def generation_record(render: Render, disclosure: str) -> tuple[dict, str | None]:
    """The org.estampille.generation assertion (and the prompt's salt when it is hashed)."""
    model = render.model
    generation = {
        "image_id": render.image_id,
        "model": model["id"],
        "model_name": model.get("name") or model["id"],
        "revision": model["revision"],
        "weights_sha256": model["weights_sha256"],
        "pipeline": model["pipeline_class"],
        "family": render.options.get("family"),
        "options": {k: v for k, v in render.options.items() if k != "family"},
        "licence": model["licence"],
        "commercial_use": model["commercial_use"],
        "test_model": model["test_model"],
        "seed": render.seed,
        "steps": render.steps,
        "guidance": render.guidance,
        "scheduler": render.scheduler["class"],
        "width": render.width,
        "height": render.height,
        "mode": render.mode,
        "reference": {k: v for k, v in (render.reference or {}).items() if k != "path"} or None,
    }
    salt = None
    if disclosure == "full":
        generation.update(prompt=render.prompt, negative_prompt=render.negative_prompt)
    elif disclosure == "hashed":
        salt = secrets.token_hex(16)
        generation["prompt_sha256"] = hashlib.sha256((salt + render.prompt).encode()).hexdigest()
    return generation, salt


def software_agent(render: Render) -> dict[str, str]:
    """The C2PA softwareAgent: the diffusers pipeline, or whatever renderer the batch was given."""
    pipeline = render.model["pipeline_class"]
    if "diffusers" in render.versions:
        return {"name": f"diffusers {pipeline}", "version": render.versions["diffusers"]}
    name, version = next(iter(render.versions.items()), (pipeline, "unknown"))
    return {"name": f"{name} {pipeline}", "version": version}


STRENGTH_STEPS = (1.0, 1.25, 1.5)


def platform_copy(image: Image.Image) -> Image.Image:
    """What a social platform makes of an upload: 1080 px wide, JPEG q80 with 4:2:0 chroma."""
    buffer = io.BytesIO()
    image.resize((1080, round(1080 * image.height / image.width)), Image.Resampling.LANCZOS).save(
        buffer, "JPEG", quality=80, subsampling=2
    )
    return Image.open(buffer)


def watermarked_pixels(
    render_image: Image.Image, image_id: str, settings, steps: tuple[float, ...] = STRENGTH_STEPS
) -> tuple[Image.Image, dict | None]:
    """The pixels that get signed: the raw render with the invisible mark (when the brand keeps it
    on), and what the record says of the mark. The mark is read back from the file as signed and
    from a platform copy of it; a picture that hides it poorly (small, noisy) is marked again a
    little stronger (x1.25, x1.5), and the record says the strength used and what was read.
    Deterministic: a re-render gives the same pixels."""
    if settings is None or not settings.enabled:
        return render_image, None
    for step in steps:
        strength = round(settings.strength * step, 4)
        embedded = watermark.embed(render_image, image_id, strength)
        mark = embedded.record(image_id, strength)
        mark["read_back"] = {
            "as signed": watermark.detect(embedded.image).image_id == mark["payload"],
            "platform copy (1080 px JPEG q80 4:2:0)": watermark.detect(platform_copy(embedded.image)).image_id
            == mark["payload"],
        }
        if all(mark["read_back"].values()):
            break
    return embedded.image, mark


def sign_render(
    render: Render,
    run_dir: Path,
    brand_name: str,
    week: str,
    rights,
    signer: ManifestSigner,
    identity: SignerIdentity,
    mark_settings=None,
) -> Provenance:
    """Write images/<id>.png (watermarked, labelled and signed) and images/<id>.json; return the record."""
    instance_id = f"xmp:iid:{uuid.uuid4()}"
    xmp = xmp_fields(render, rights, instance_id)
    pixels, mark = watermarked_pixels(Image.open(inside(run_dir, render.file)), render.image_id, mark_settings)
    found = soft_binding.bindings(render.image_id if mark else None, pixels)
    unsigned = png_with_xmp(pixels, xmp_packet(xmp))
    generation, salt = generation_record(render, rights.prompt_disclosure)
    ingredients = []
    if render.reference:
        reference = Path(render.reference["path"])
        mime = mimetypes.guess_type(reference.name)[0] or "image/png"
        ingredients.append(({"title": reference.name, "relationship": "inputTo"}, mime, reference.read_bytes()))
    file = Path("images") / f"{render.image_id}.png"
    if mark:
        generation["watermark"] = {k: mark[k] for k in ("method", "version", "strength", "payload")}
    manifest = generation_manifest(
        file.name,
        xmp.digital_source_type,
        software_agent(render),
        generation,
        rights.data_mining,
        instance_id,
        [soft_binding.watermarked_action(mark)] if mark else [],
        soft_binding.assertions(found),
    )
    signed = signer.sign(unsigned, "image/png", manifest, ingredients)
    report = read_manifest(signed, "image/png", identity.trust_anchor_pem)
    if report.state not in ("Valid", "Trusted"):
        raise EstampilleError(f"signed {file} does not validate ({report.state}: {', '.join(report.failures)})")
    (run_dir / "images").mkdir(exist_ok=True)
    (run_dir / file).write_bytes(signed)
    sidecar = file.with_suffix(".json")
    record = Provenance(
        image_id=render.image_id,
        file=str(file),
        sidecar=str(sidecar),
        sha256=hashlib.sha256(signed).hexdigest(),
        digital_source_type=xmp.digital_source_type,
        c2pa_state=report.state,
        signer=identity.subject,
        prompt_disclosure=rights.prompt_disclosure,
        prompt_salt=salt,
        instance_id=instance_id,
        xmp=vars(xmp),
        watermark=mark,
        soft_bindings=found,
    )
    (run_dir / sidecar).write_text(
        json.dumps(
            {
                "provenance": record.model_dump(mode="json"),
                "render": render.model_dump(mode="json"),
                "xmp": vars(xmp),
                "brand": brand_name,
                "week": week,
            },
            indent=2,
            ensure_ascii=False,
        )
    )
    return record
