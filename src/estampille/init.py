"""`estampille init DIR`: a new brand folder in one command.

A new user should not have to learn brand.yaml's schema before the first run. This writes a
commented brand.yaml (every section says what it is for and what to change first), a calendar
template as a spreadsheet (calendar.csv: weekly rows, so whatever week it is the batch has posts),
and the competitor folder, from the few answers that matter: the brand's name, languages,
platforms, timezone and licence policy, asked on a terminal or given as options. The result is
validated with the same code as any brand folder before the command returns, and runs with
`estampille run` as it is (with the tiny test model until render.model names a real one).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import ConfigError
from .platforms import PLATFORM_LIMITS

# The AI-disclosure line per language; other languages start from the English line, marked.
DISCLOSURES = {
    "fr": "Visuel créé avec l'aide de l'IA, validé par notre équipe.",
    "en": "Image created with AI assistance, approved by our team.",
    "de": "Bild mit Unterstützung von KI erstellt, von unserem Team geprüft.",
    "es": "Imagen creada con ayuda de IA, revisada por nuestro equipo.",
    "it": "Immagine creata con l'aiuto dell'IA, approvata dal nostro team.",
    "nl": "Beeld gemaakt met hulp van AI, goedgekeurd door ons team.",
    "pt": "Imagem criada com ajuda de IA, aprovada pela nossa equipa.",
}
BRIEFS = {
    "fr": "Ce qui est nouveau cette semaine chez {name} ({{week}}), une idée concrète par post.",
    "en": "What is new at {name} this week ({{week}}), one concrete idea per post.",
}
WEEKDAYS = ("monday", "wednesday", "friday", "tuesday", "thursday")
LICENCE_POLICIES = ("commercial", "non-commercial")


@dataclass
class BrandAnswers:
    """The questions that matter for a first brand; everything else is a commented default."""

    name: str
    languages: list[str] = field(default_factory=lambda: ["en"])
    platforms: list[str] = field(default_factory=lambda: ["instagram"])
    timezone: str = "Europe/Paris"
    licence_policy: str = "commercial"
    website: str | None = None

    def check(self) -> BrandAnswers:
        """Each answer checked with the fix, before anything is written."""
        if not self.name.strip():
            raise ConfigError("--name: the brand needs a name")
        bad = [lang for lang in self.languages if not re.fullmatch(r"[a-z]{2,3}", lang)]
        if bad or not self.languages:
            raise ConfigError(f"--language: {', '.join(bad) or 'none given'}: give ISO 639-1 codes, e.g. fr, en")
        unknown = [p for p in self.platforms if p not in PLATFORM_LIMITS]
        if unknown or not self.platforms:
            raise ConfigError(
                f"--platform: {', '.join(unknown) or 'none given'}: choose among {', '.join(PLATFORM_LIMITS)}"
            )
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(
                f"--timezone {self.timezone!r} is not an IANA time zone (e.g. Europe/Paris, America/Montreal)"
            ) from None
        if self.licence_policy not in LICENCE_POLICIES:
            raise ConfigError(f"--licence-policy must be {' or '.join(LICENCE_POLICIES)}")
        if self.website and not re.match(r"^https?://", self.website):
            raise ConfigError(f"--website {self.website!r}: give the full address, e.g. https://example.com")
        return self


def split_list(values: list[str] | None) -> list[str]:
    """`--language fr --language en` or `--language fr,en` -> ['fr', 'en'] (lower case)."""
    return [part.strip().lower() for value in values or [] for part in value.split(",") if part.strip()]


def _q(value: str) -> str:
    """A YAML scalar for any text (JSON strings are valid YAML)."""
    return json.dumps(value, ensure_ascii=False)


def brand_yaml(answers: BrandAnswers, today: dt.date) -> str:
    name, site = answers.name.strip(), (answers.website or "").rstrip("/")
    languages = ", ".join(answers.languages)
    platform_lines = "\n".join(f"  {p}: {{}}" for p in answers.platforms)
    disclosure_lines = "\n".join(
        f"    {lang}: {_q(DISCLOSURES.get(lang, DISCLOSURES['en']))}"
        + ("" if lang in DISCLOSURES else "   # TODO: translate into this language")
        for lang in answers.languages
    )
    example_language = answers.languages[0]
    statement = (
        f"{site}/image-rights" if site else "https://example.com/image-rights   # TODO: your page on image rights"
    )
    contact = f"{site}/contact" if site else "https://example.com/contact   # TODO: how to ask for a licence"
    return f"""# {name}: brand file written by `estampille init` on {today.isoformat()}.
# Everything below is validated before any run: an unknown key or a bad value stops with its line.
# Change first: the voice (tone, do/don't, an example post per language), the visual style, and
# render.model once you have a real image model (the tiny test model makes noise).
name: {_q(name)}
timezone: {answers.timezone}          # what "this week" and "Monday 07:00" mean
languages: [{languages}]
{f"website: {site}" if site else "# website: https://example.com"}
# handle: "@yourbrand"

voice:
  tone: warm, clear and concrete; no hype     # TODO: how the brand speaks
  do:
    - one idea per post, concrete words
  dont:
    - no invented prices, promotions or opening hours
  examples: []        # a real post per language helps most: - {{language: {example_language}, text: "..."}}
  vocabulary: []      # the brand's own words no dictionary has (products, places)

# One entry per platform you post on; limits you leave out are the platform's own, and a brand
# may be stricter, never looser (e.g. instagram: {{max_hashtags: 5}}).
platforms:
{platform_lines}

visual:
  style: natural light, clean composition, real materials      # TODO: the brand's photographic style
  palette: []
  composition: subject off-centre, space for text at the top
  negative_prompt: text, watermark, logo, cartoon, oversaturated

banned_terms: []      # words no caption or prompt may use

# Who posts speak to (a calendar row names one under "Audience"), e.g.
# audiences:
#   locals: {{language: {example_language}, locale: {example_language}-{example_language.upper()}, region: your city}}
audiences: {{}}

# The AI-disclosure line, in every language the brand posts in.
disclosure:
  policy: always      # always | never | platforms (then list them under `platforms:`)
  lines:
{disclosure_lines}

licence_policy: {answers.licence_policy}   # commercial refuses models whose licence forbids commercial use

# Competitors' images go in competitors/<name>/ (see competitors/README.txt); each render is checked
# against them. List them like this:
# competitors:
#   - name: Rival Bakery
#     images: competitors/rival-bakery
#     marks: ["Rival", "Their Slogan"]      # never in prompts or captions
competitors: []

# What every published file says of its rights (IPTC XMP and C2PA).
rights:
  creator: {_q(name)}
  credit_line: {_q(name + " (image generated with AI)")}
  copyright_notice: {_q(f"© {today.year} {name}")}
  web_statement: {statement}
  licensor_name: {_q(name)}
  licensor_url: {contact}
  data_mining: prohibited      # prohibited | allowed (AI training and data mining)

text:
  variants: 2         # text variants per post for the reviewer to choose from

render:
  # The tiny TEST model (random weights: noise) so that the first run works anywhere. For real
  # visuals name a model of the registry, e.g. stabilityai/sd-turbo or stabilityai/sdxl-turbo
  # (commercial use depends on the licence: see the README), and remove steps/width/height.
  model: builtin:tiny-sd
  steps: 4
  width: 256
  height: 256

# Bulk-upload files `estampille publish` writes for your scheduler.
publish:
  schedulers: [hootsuite]      # hootsuite, sprout, agorapulse
  # image_base_url: https://media.example.com/estampille   # where out/<brand>/ is served (Agorapulse)

# A message when the weekly batch is ready. A channel names the environment VARIABLE holding
# its webhook URL or password; the secret itself never goes in this file.
# notify:
#   review_url: https://review.example.com      # where `estampille serve` is reached
#   channels:
#     - {{type: slack, webhook_env: SLACK_WEBHOOK_URL}}
#     - {{type: email, smtp_host: smtp.example.com, sender: estampille@example.com, to: [you@example.com],
#        username_env: SMTP_USER, password_env: SMTP_PASSWORD}}
"""


def calendar_rows(answers: BrandAnswers) -> list[list[str]]:
    """A weekly row per platform (Monday, Wednesday, Friday...) in the brand's languages in turn:
    every week has posts, so the first `estampille run` has work whatever the date."""
    header = [
        "Date",
        "Time",
        "Platform",
        "Language",
        "Audience",
        "Brief",
        "Facts",
        "Reference image",
        "Strength",
        "Every",
        "Starts",
        "Ends",
        "Skip",
    ]
    rows = [header]
    for i, platform in enumerate(answers.platforms[: len(WEEKDAYS)]):
        language = answers.languages[i % len(answers.languages)]
        brief = BRIEFS.get(language, BRIEFS["en"]).format(name=answers.name.strip())
        rows.append(["", "09:00", platform, language, "", brief, "", "", "", WEEKDAYS[i], "", "", ""])
    return rows


COMPETITORS_README = """Competitors' images for the lookalike check.

Put each competitor's pictures (JPEG, PNG, WebP) in a folder of its own here, e.g.
competitors/rival-bakery/, and list it in brand.yaml under `competitors:` with its name and
marks. Every render of every batch is compared with them (and with the brand's own past renders);
a render that looks like one is flagged on the review page and cannot be approved without a reason.
Record where the pictures come from and what use is allowed: `estampille lookalike index --brand
DIR --competitor NAME --captured DATE --rights NOTE FOLDER` does it for a large set.
"""


def write_brand(folder: Path, answers: BrandAnswers, today: dt.date | None = None):
    """Write the new brand folder and return it loaded (BrandBundle). It is made and validated in a
    scratch folder first, so a failure leaves nothing behind; an existing brand is never overwritten."""
    import csv
    import shutil
    import tempfile

    from .brand import load_brand

    answers.check()
    today = today or dt.date.today()
    for name in ("brand.yaml", "calendar.yaml", "calendar.csv", "calendar.xlsx", "competitors"):
        if (folder / name).exists():
            raise ConfigError(
                f"{folder / name} exists: `estampille init` makes a new brand folder and never "
                "overwrites one; choose an empty or new folder"
            )
    with tempfile.TemporaryDirectory() as scratch:
        draft = Path(scratch) / "brand"
        (draft / "competitors").mkdir(parents=True)
        (draft / "brand.yaml").write_text(brand_yaml(answers, today), encoding="utf-8")
        # UTF-8 with a byte-order mark so that Excel shows accents; ';' where Excel's locale expects it.
        delimiter = ";" if answers.languages[0] in ("fr", "de", "es", "it", "nl", "pt") else ","
        with (draft / "calendar.csv").open("w", newline="", encoding="utf-8-sig") as f:
            csv.writer(f, delimiter=delimiter).writerows(calendar_rows(answers))
        (draft / "competitors" / "README.txt").write_text(COMPETITORS_README, encoding="utf-8")
        load_brand(draft)  # the validation every run does
        folder.mkdir(parents=True, exist_ok=True)
        for item in draft.iterdir():
            shutil.move(str(item), str(folder / item.name))
    return load_brand(folder)
