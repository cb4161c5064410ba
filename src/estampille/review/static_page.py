"""An offline review page for one run: every post, its text variants, images, verdicts, provenance."""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape

TEMPLATES = Path(__file__).with_name("templates")


def _environment() -> Environment:
    # Autoescape: captions and prompts come from an LLM and must never become markup.
    return Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))


def marked_segments(text: str, spans: list[list]) -> list[tuple[str, str | None]]:
    """`text` cut into (piece, fact kind or None) so the template can mark unsupported facts
    while still escaping every piece."""
    pieces, position = [], 0
    for start, end, kind in sorted(spans):
        if start >= position:
            pieces += [(text[position:start], None), (text[start:end], kind)]
            position = end
    return [p for p in pieces + [(text[position:], None)] if p[0]]


def write_review_page(out: Path, brand_name: str, week: str, slots, drafts, prompts, renders, checks,
                      provenance, notes) -> Path:
    prompt_by_draft = {p.draft_id: p for p in prompts}
    check_by_image = {c.image_id: c for c in checks if c}
    signed_by_image = {p.image_id: p for p in provenance}
    posts = []
    for slot in slots:
        variants = []
        for draft in (d for d in drafts if d.slot_id == slot.slot_id):
            prompt = prompt_by_draft.get(draft.draft_id)
            images = [{"render": r, "check": check_by_image.get(r.image_id), "signed": signed_by_image.get(r.image_id),
                       "evidence": sorted(str(p.relative_to(out.parent)) for p in
                                          (out.parent / "evidence").glob(f"{r.image_id}-*.png"))}
                      for r in renders if prompt and r.prompt_id == prompt.prompt_id]
            variants.append({"draft": draft, "prompt": prompt, "images": images,
                             "segments": marked_segments(draft.text, draft.fact_spans)})
        posts.append({"slot": slot, "variants": variants})
    html = _environment().get_template("review.html").render(
        brand=brand_name, week=week, posts=posts, notes=notes,
        totals={"posts": len(slots), "drafts": len(drafts), "images": len(renders),
                "lookalikes": sum(1 for c in checks if c and c.verdict == "lookalike")})
    tmp = out.with_suffix(".tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(out)
    return out
