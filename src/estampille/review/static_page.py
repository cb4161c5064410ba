"""An offline review page for one run: every post, its text variants, images, verdicts, provenance."""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape

from ..lookalike.evidence import GRADE_WORDS

TEMPLATES = Path(__file__).with_name("templates")


def _environment() -> Environment:
    # Autoescape: captions and prompts come from an LLM and must never become markup.
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))
    env.globals["grade_words"] = GRADE_WORDS
    return env


QUALITY_MARKS = {"unknown": "misspelt or unknown word", "language": "another language",
                 "truncated": "truncated ending"}


def marked_segments(text: str, fact_spans: list[list], quality: dict | None = None) -> list[tuple[str, str | None]]:
    """`text` cut into (piece, why it is marked, or None) so the template can mark unsupported
    facts and the quality gate's findings (unknown words, another language, a cut ending) while
    still escaping every piece. Where two marks overlap, the first to start wins."""
    marks = [(start, end, f"unsupported {kind}: not in the brief or brand file") for start, end, kind in fact_spans]
    marks += [(start, end, QUALITY_MARKS[kind]) for start, end, kind in (quality or {}).get("spans", [])
              if kind in QUALITY_MARKS]
    titles: dict[tuple[int, int], list[str]] = {}
    for start, end, title in marks:   # one mark per stretch, naming every reason it has
        titles.setdefault((start, end), []).append(title)
    pieces, position = [], 0
    for (start, end), title in sorted((span, "; ".join(t)) for span, t in titles.items()):
        if start >= position:
            pieces += [(text[position:start], None), (text[start:end], title)]
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
                             "segments": marked_segments(draft.text, draft.fact_spans, draft.quality)})
        posts.append({"slot": slot, "variants": variants})
    html = _environment().get_template("review.html").render(
        brand=brand_name, week=week, posts=posts, notes=notes,
        totals={"posts": len(slots), "drafts": len(drafts), "images": len(renders),
                "lookalikes": sum(1 for c in checks if c and c.verdict == "lookalike")})
    tmp = out.with_suffix(".tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(out)
    return out
