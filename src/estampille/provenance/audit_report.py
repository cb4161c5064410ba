"""Audit reports for people and tools: the terminal text of `estampille audit`, and `--report`
as a self-contained HTML page (thumbnails, verdicts, the manifest tree: something a designer can
send to a client or to legal), a CSV (one row per file) or a JSON document. The web audit page
shows the same HTML fragment."""

from __future__ import annotations

import base64
import csv
import io
import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape

from ..images import UnreadableImage, open_image
from ..lookalike import describe
from .audit import AuditReport
from .credentials import short_source_type

CSV_COLUMNS = (
    "file",
    "verdict",
    "c2pa_state",
    "c2pa_failures",
    "source_type",
    "generator",
    "signer",
    "issuer",
    "trusted_through",
    "xmp_source_type",
    "image_id",
    "found_by",
    "brand",
    "week",
    "model",
    "licence",
    "commercial_use",
    "review",
    "conflicts",
    "error",
    "watermark",
)

_env = Environment(
    loader=PackageLoader("estampille.provenance", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters["source_type"] = short_source_type
_env.filters["watermark_line"] = lambda report: watermark_line(report)


def _active(report: AuditReport) -> dict:
    return (report.credentials or {}).get("active") or {}


def csv_row(report: AuditReport) -> dict[str, str]:
    active, ours, record = _active(report), report.ours, report.record
    signer = active.get("signer") or {}
    return {
        "file": report.file,
        "verdict": report.verdict,
        "c2pa_state": report.c2pa_state,
        "c2pa_failures": " ".join(report.c2pa_failures),
        "source_type": short_source_type((report.credentials or {}).get("source_type")) or "",
        "generator": active.get("generator") or "",
        "signer": signer.get("common_name") or "",
        "issuer": signer.get("issuer") or "",
        "trusted_through": "; ".join((report.credentials or {}).get("trusted_through") or []),
        "xmp_source_type": short_source_type(report.xmp.get("Iptc4xmpExt:DigitalSourceType")) or "",
        "image_id": record.image_id if record else "",
        "found_by": record.found_by if record else "",
        "brand": (record.brand if record else None) or "",
        "week": (record.week if record else None) or "",
        "model": (ours.model_name if ours else None) or "",
        "licence": (ours.licence if ours else None) or "",
        "commercial_use": (ours.commercial_use if ours else None) or "",
        "review": ours.review.decision if ours else "",
        "conflicts": "; ".join(c.field for c in report.conflicts),
        "error": report.error or "",
        "watermark": "" if report.error else watermark_line(report),
    }


def thumbnail(path: Path, size: int = 160) -> str | None:
    """A small WebP as a data: URI, so the HTML report is one file that travels."""
    try:
        image = open_image(path, before_load=lambda im: im.draft("RGB", (size, size)) if im.format == "JPEG" else None)
    except (UnreadableImage, OSError):
        return None
    image.thumbnail((size, size))
    buffer = io.BytesIO()
    (image.convert("RGBA") if image.mode in ("P", "LA", "PA") else image).convert("RGB").save(
        buffer, "WEBP", quality=70
    )
    return "data:image/webp;base64," + base64.b64encode(buffer.getvalue()).decode()


def html_fragment(reports: list[AuditReport], thumbnails: dict[str, str | None] | None = None) -> str:
    """The report body (no <html>): the web audit page embeds it."""
    macros = _env.get_template("audit_report.html").module
    # jinja2 types a template's module as having no attributes: its macros are made when it renders
    return macros.reports(reports, thumbnails or {})  # type: ignore[attr-defined]


def html_page(reports: list[AuditReport], thumbnails: dict[str, str | None]) -> str:
    return _env.get_template("audit_report_page.html").render(reports=reports, thumbnails=thumbnails)


def write_report(reports: list[AuditReport], target: Path) -> Path:
    suffix = target.suffix.lower()
    target.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".json":
        target.write_text(json.dumps([r.as_dict() for r in reports], indent=2, ensure_ascii=False), encoding="utf-8")
    elif suffix == ".csv":
        with target.open("w", newline="", encoding="utf-8") as out:
            writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            writer.writerows(csv_row(r) for r in reports)
    else:
        # Decoding dominates (a 1024² PNG takes ~25 ms) and Pillow releases the GIL while it
        # decodes: one thread per core makes the thumbnails side by side.
        files = [r.file for r in reports if not r.error]
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            thumbnails = dict(zip(files, pool.map(lambda f: thumbnail(Path(f)), files), strict=True))
        target.write_text(html_page(reports, thumbnails), encoding="utf-8")
    return target


def _manifest_lines(node: dict, depth: int, echo: Callable[[str], None]) -> None:
    pad = "    " + "  " * depth
    signer = node.get("signer") or {}
    issued = f" (issued by {signer['issuer']})" if signer.get("issuer") else ""
    when = f", {signer['time']} [{signer['time_source']}]" if signer.get("time") else ""
    echo(
        f"{pad}{'└ ' if depth else ''}manifest {node.get('title') or node.get('label')}: made with "
        f"{node.get('generator') or '?'}; signed by {signer.get('common_name') or '?'}{issued}, "
        f"{signer.get('algorithm') or '?'}{when}"
    )
    for action in node.get("actions") or []:
        source = action.get("digital_source_type")
        extra = f" [{short_source_type(source)}]" if source else ""
        agent = f" by {action['software_agent']}" if action.get("software_agent") else ""
        echo(f"{pad}  action {action['action']}{extra}{agent}")
    for ingredient in node.get("ingredients") or []:
        codes = {s["code"] for s in ingredient.get("status") or [] if s["kind"] == "failure"}
        state = (
            ("changed or broken: " + ", ".join(sorted(codes)))
            if codes - {"signingCredential.untrusted"}
            else ("has its own credentials" if ingredient.get("manifest") else "no credentials of its own")
        )
        echo(f"{pad}  ingredient {ingredient.get('title')} ({ingredient.get('relationship')}): {state}")
    for label, summary in (node.get("assertions") or {}).items():
        if summary != "thumbnail":
            echo(f"{pad}  assertion {label}: {summary}")
    for status in node.get("status") or []:
        if status["kind"] == "failure":
            echo(f"{pad}  status {status['code']}: {status['meaning'] or status['explanation']}")
    for child in node.get("children") or []:
        _manifest_lines(child, depth + 1, echo)


def watermark_line(r: AuditReport) -> str:
    """What the pixels carry: our invisible watermark (and how the copy was changed), another
    tool's known mark, nothing, or not read (the file was traced by its exact bytes first)."""
    if r.watermark:
        w = r.watermark
        changes = [f"rotated {w.rotation:g}°"] if abs(w.rotation) > 0.3 else []
        changes += ["mirrored"] if w.mirrored else []
        return (
            f"Estampille, AI-generated, image ID {w.image_id} ({w.method} v{w.version}"
            + (f"; copy {', '.join(changes)}" if changes else "")
            + ")"
        )
    if r.foreign_watermark:
        return r.foreign_watermark
    if r.record and r.record.found_by == "content hash":
        return "not read (the file is one of ours to the byte)"
    return "none found"


def print_report(r: AuditReport, echo: Callable[[str], None]) -> None:
    """The terminal view of one file's audit."""
    echo(r.file)
    if r.error:
        echo(f"  error: {r.error}")
        return
    echo(f"  verdict: {r.verdict}")
    echo(f"  C2PA: {r.c2pa_state}" + (f" ({', '.join(r.c2pa_failures)})" if r.c2pa_failures else ""))
    if _active(r):
        _manifest_lines(_active(r), 0, echo)
    source = short_source_type(r.xmp.get("Iptc4xmpExt:DigitalSourceType"))
    if source:
        xmp = f"{source} ({len(r.xmp)} fields)"
    elif r.xmp:
        xmp = f"present, no DigitalSourceType ({', '.join(list(r.xmp)[:6])})"
    else:
        xmp = "none"
    echo(f"  XMP: {xmp}" + ("  — metadata gone (stripped or re-encoded)" if r.metadata_gone else ""))
    echo(f"  watermark: {watermark_line(r)}")
    if r.record:
        t = r.record
        how = (
            t.found_by
            + (f", distances {t.distances}" if t.distances else "")
            + (f", {describe.region(t.region)}" if t.region else "")
        )
        echo(f"  ledger: {t.kind} row {t.ledger_row}, image {t.image_id}, {t.brand} {t.slot} (found by {how})")
    else:
        echo("  ledger: no matching record")
        for c in r.candidates:
            echo(
                f"  nearest render: {c.image_id} ({c.brand} {c.week}), pHash {c.phash}, dHash {c.dhash} "
                f"(traced at pHash <= {c.thresholds['phash']} and dHash <= {c.thresholds['dhash']})"
            )
    if r.ours:
        o = r.ours
        echo(
            f"  model: {o.model_name} ({o.model}), licence {o.licence}, commercial use {o.commercial_use}"
            + (" — TEST model" if o.test_model else "")
        )
        review = o.review
        echo(
            f"  review: {review.decision}"
            + (f" by {review.reviewer} at {review.decided_at}" if review.reviewer else "")
            + (f" (lookalike override: {review.lookalike_override})" if review.lookalike_override else "")
        )
        for ingredient in o.ingredients:
            echo(
                f"  made from: {ingredient.title} ({ingredient.relationship}), lookalike check: {ingredient.lookalike}"
                + "".join(f"; matches {m.source} {m.reference}" for m in ingredient.matches)
            )
        if o.lookalike:
            echo(f"  lookalike check: {o.lookalike.verdict} ({o.lookalike.matches} match(es))")
        for export in o.exports:
            echo(f"  exported: {export.file} (approved by {export.reviewer}, ledger row {export.ledger_row})")
        for edit in o.edits:
            echo(f"  retouched: by {edit.editor} from {edit.source_name} (ledger row {edit.ledger_row})")
    for conflict in r.conflicts:
        echo(f"  CONFLICT {conflict.field}: " + ", ".join(f"{k} says {v}" for k, v in conflict.layers.items()))
    for note in r.notes:
        echo(f"  note: {note}")
