"""An offline review page for one run: every post, its text variants, images, verdicts, provenance
(the week as `week_view.load_run` reads it from the ledger, as the web page shows it)."""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape

from ..lookalike import describe
from .week_view import RunView

TEMPLATES = Path(__file__).with_name("templates")


def _environment() -> Environment:
    # Autoescape: captions and prompts come from an LLM and must never become markup.
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))
    env.globals["describe"] = describe  # one wording of a lookalike match (lookalike/describe.py)
    return env


def write_review_page(out: Path, brand_name: str, week: str, run: RunView, notes: list[str]) -> Path:
    """The week's review page as one offline HTML file, from the same view as the web page."""
    html = _environment().get_template("review.html").render(brand=brand_name, week=week, run=run, notes=notes)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(out)
    return out
