"""The brand file and its weekly calendar: what to post, where, in which voice and with which rules.

Both are validated in full before anything runs, so a typo stops the batch with the file,
field and line instead of failing halfway through a render.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .errors import ConfigError
from .notify_settings import NotifySettings
from .paths import brand_slug
from .platforms import PLATFORM_LIMITS
from .publish_settings import PublishSettings
from .yaml_source import YamlSource

BRAND_FILE = "brand.yaml"
CALENDAR_FILE = "calendar.yaml"
WEEK_PATTERN = re.compile(r"^(\d{4})-W(\d{2})$")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
# What a recurring post's brief may name; each is filled in for the date of the post.
BRIEF_FIELDS = ("date", "weekday", "week")


class Strict(BaseModel):
    """Unknown keys are errors: a misspelt field must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class VoiceExample(Strict):
    language: str
    text: str


class Voice(Strict):
    tone: str
    do: list[str] = []
    dont: list[str] = []
    examples: list[VoiceExample] = []
    vocabulary: list[str] = []  # the brand's own words no dictionary has (products, places, slang)


class PlatformRules(Strict):
    """A brand's limits for one platform; unset ones take the platform's own (platforms.py)."""

    max_chars: int | None = Field(default=None, gt=0)
    max_hashtags: int | None = Field(default=None, ge=0)
    max_line_breaks: int | None = Field(default=None, ge=0)

    def resolved(self, platform: str) -> PlatformRules:
        own = PLATFORM_LIMITS.get(platform)
        if own is None:
            return self
        return PlatformRules(
            max_chars=self.max_chars or own.max_chars,
            max_hashtags=own.max_hashtags if self.max_hashtags is None else self.max_hashtags,
            max_line_breaks=self.max_line_breaks if self.max_line_breaks is not None else own.max_line_breaks,
        )


@dataclass(frozen=True)
class Limits:
    """One platform's limits as drafting applies them: the brand's, completed with the
    platform's own, so a length and a hashtag count are always there (brand validation refuses an
    unknown platform without them)."""

    max_chars: int
    max_hashtags: int
    max_line_breaks: int | None


class Visual(Strict):
    style: str
    palette: list[str] = []
    composition: str = ""
    negative_prompt: str = ""


class Disclosure(Strict):
    """The AI-disclosure line per language, and where it goes: every post, no post, or the
    posts of the listed platforms only (policy: platforms)."""

    policy: Literal["always", "never", "platforms"] = "always"
    platforms: list[str] = []
    lines: dict[str, str]

    def required_on(self, platform: str) -> bool:
        return self.policy == "always" or (self.policy == "platforms" and platform in self.platforms)


class Audience(Strict):
    """Who a post speaks to: drafting adapts tone, references and language variant to it."""

    language: str
    locale: str  # e.g. fr-FR, fr-CA, en-GB
    region: str = ""
    culture: str = ""
    interests: list[str] = []
    tone: str = ""


class Competitor(Strict):
    name: str
    images: str | None = None  # folder relative to the brand folder
    marks: list[str] = []  # product names and slogans that must not appear in prompts


class Rights(Strict):
    creator: str
    credit_line: str
    copyright_notice: str
    web_statement: str
    licensor_name: str
    licensor_url: str
    data_mining: Literal["prohibited", "allowed"] = "prohibited"
    # What a published file says of its prompt: the text, a salted SHA-256 (the salt stays in the
    # ledger, to prove the prompt later), or nothing.
    prompt_disclosure: Literal["full", "hashed", "none"] = "full"


class LLMSettings(Strict):
    """An OpenAI-compatible endpoint; the key is read from the named environment variable."""

    base_url: str | None = None
    model: str | None = None
    api_key_env: str = "ESTAMPILLE_LLM_API_KEY"
    temperature: float = 0.7
    timeout_s: float = 60.0


class TextSettings(Strict):
    variants: int = Field(default=2, ge=1, le=10)
    llm: LLMSettings = LLMSettings()


class RenderSettings(Strict):
    """Unset steps, guidance and size come from the model (registry defaults, then its family's:
    render/families.py), e.g. FLUX.1-schnell 4 steps at guidance 0, SDXL 30 steps at 1024 px."""

    model: str = "builtin:tiny-sd"
    steps: int | None = Field(default=None, ge=1, le=200)
    guidance: float | None = Field(default=None, ge=0)
    width: int | None = Field(default=None, ge=64, le=4096)
    height: int | None = Field(default=None, ge=64, le=4096)
    true_cfg_scale: float | None = Field(default=None, ge=1)  # FLUX: > 1 applies the negative prompt
    max_sequence_length: int | None = Field(default=None, ge=16, le=512)  # T5 families: prompt tokens
    images_per_variant: int = Field(default=1, ge=1, le=8)
    batch_size: int = Field(default=8, ge=1, le=64)
    accepted_licences: list[str] = []  # conditional licences legal has accepted (registry ids)
    scheduler: str | None = None  # any diffusers scheduler class, e.g. EulerDiscreteScheduler
    cpu_offload: bool = False  # GPUs with little memory: keep idle sub-models in RAM
    attention_slicing: bool = False  # GPUs with little memory: attention in slices
    # Speed options, off by default; each one in use is recorded with every image it made.
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = "auto"  # auto: the family's on GPU, fp32 on CPU
    compile: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] | None = None
    channels_last: bool = False  # UNet families: NHWC convolutions
    vae_slicing: bool = False  # decode a batch one image at a time (less memory)
    vae_tiling: bool = False  # decode large images in tiles (less memory; seams possible)
    fuse_qkv: bool = False  # fused attention projections in the denoiser

    @field_validator("scheduler")
    @classmethod
    def known_scheduler(cls, value: str | None) -> str | None:
        if value is None:
            return value
        import diffusers

        names = sorted(n for n in dir(diffusers) if n.endswith("Scheduler") and n != "SchedulerMixin")
        if value not in names:
            raise ValueError(f"unknown scheduler; diffusers has: {', '.join(names)}")
        return value

    @field_validator("width", "height")
    @classmethod
    def multiple_of_8(cls, value: int | None) -> int | None:
        if value is not None and value % 8:
            raise ValueError(f"must be a multiple of 8, got {value}")
        return value


class WatermarkSettings(Strict):
    """The invisible watermark every render carries (provenance/watermark.py): on by default, so a
    copy stripped of its metadata still says it was made by AI and which image it is."""

    enabled: bool = True
    strength: float = Field(default=1.0, ge=0.5, le=2.0)  # 1.0: PSNR >= ~41 dB; more survives more, shows more


class Brand(Strict):
    name: str
    timezone: str = "Europe/Paris"  # where "this week" and "Monday 07:00" are read
    handle: str | None = None
    website: str | None = None
    languages: list[str] = Field(min_length=1)
    voice: Voice
    platforms: dict[str, PlatformRules] = Field(min_length=1)
    visual: Visual
    banned_terms: list[str] = []
    audiences: dict[str, Audience] = {}
    disclosure: Disclosure
    licence_policy: Literal["commercial", "non-commercial"]
    competitors: list[Competitor] = []
    rights: Rights
    text: TextSettings = TextSettings()
    render: RenderSettings = RenderSettings()
    # Where results go, not how they are made: neither changes the brand's version (see load_brand).
    notify: NotifySettings | None = None  # the week-ready message (notify.py)
    publish: PublishSettings = PublishSettings()  # schedulers' bulk files (review/schedulers.py)
    watermark: WatermarkSettings = WatermarkSettings()

    @field_validator("timezone")
    @classmethod
    def known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("not an IANA time zone (e.g. Europe/Paris, America/Montreal)") from None
        return value

    def rules_for(self, platform: str) -> Limits:
        """The brand's limits for `platform`, completed with the platform's own."""
        rules = self.platforms[platform].resolved(platform)
        if rules.max_chars is None or rules.max_hashtags is None:  # load_brand refuses such a brand
            raise ConfigError(f"platform '{platform}' needs max_chars and max_hashtags")
        return Limits(rules.max_chars, rules.max_hashtags, rules.max_line_breaks)


class PostFields(Strict):
    """What a post is, dated or recurring."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    time: str = Field(default="09:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")  # local publishing time
    platform: str
    language: str
    brief: str
    facts: list[str] = []  # offers, prices, times the post may state
    audience: str | None = None  # a key of brand.yaml audiences
    reference_image: str | None = None  # image-to-image from this file (relative to the brand folder)
    strength: float = Field(default=0.6, gt=0, le=1)  # how far the render may move from the reference


class Post(PostFields):
    date: dt.date


class RecurringPost(PostFields):
    """A slot that comes back every week (Monday's bread of the week, Friday's offer): one post
    per listed weekday of every week between `starts` and `ends`, except the `skip` dates. The
    brief may name {date}, {weekday} and {week}. With several weekdays, each post's id gets the
    weekday as suffix (`offre-friday`), so every slot id stays unique within its week."""

    every: Weekday | list[Weekday]
    starts: dt.date | None = None
    ends: dt.date | None = None
    skip: list[dt.date] = []

    @property
    def weekdays(self) -> list[str]:
        return [self.every] if isinstance(self.every, str) else list(self.every)

    def post_ids(self) -> list[str]:
        days = self.weekdays
        return [self.id] if len(days) == 1 else [f"{self.id}-{day}" for day in days]

    def on(self, day: dt.date) -> Post | None:
        """The post this recurrence makes on `day`, or None."""
        name = WEEKDAYS[day.weekday()]
        if name not in self.weekdays or day in self.skip:
            return None
        if (self.starts and day < self.starts) or (self.ends and day > self.ends):
            return None
        fields = self.model_dump(exclude={"every", "starts", "ends", "skip"})
        fields["id"] = self.id if len(self.weekdays) == 1 else f"{self.id}-{name}"
        fields["brief"] = self.brief.format(date=day.isoformat(), weekday=name, week=iso_week(day))
        return Post(date=day, **fields)


class Calendar(Strict):
    posts: list[Post] = []
    recurring: list[RecurringPost] = []


class BrandBundle(BaseModel):
    """A validated brand folder: brand, calendar, and the version hash of both files."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    folder: Path
    brand: Brand
    calendar: Calendar
    version: str

    @property
    def slug(self) -> str:
        return brand_slug(self.folder)

    def competitor_folders(self) -> dict[str, Path]:
        return {c.name: self.folder / c.images for c in self.brand.competitors if c.images}


def parse_week(week: str) -> tuple[dt.date, dt.date]:
    """'2026-W48' -> (Monday, Sunday) of that ISO week."""
    match = WEEK_PATTERN.match(week)
    if not match:
        raise ConfigError(f"--week must look like 2026-W48, got {week!r}")
    year, number = int(match.group(1)), int(match.group(2))
    try:
        monday = dt.date.fromisocalendar(year, number, 1)
    except ValueError:
        raise ConfigError(f"--week {week!r}: {year} has no ISO week {number}") from None
    return monday, monday + dt.timedelta(days=6)


def iso_week(day: dt.date) -> str:
    year, number, _ = day.isocalendar()
    return f"{year}-W{number:02d}"


def week_at(moment: dt.datetime, timezone: str) -> str:
    """The ISO week of `moment` as the brand's clock reads it: a run scheduled for Monday 07:00
    in Paris is 06:00 UTC, and one scheduled for Monday 00:30 in Paris is still Sunday in UTC."""
    if moment.tzinfo is None:
        raise ValueError("week_at needs an aware datetime")
    return iso_week(moment.astimezone(ZoneInfo(timezone)).date())


def load_brand(folder: str | Path, calendar_files: list[Path] | None = None) -> BrandBundle:
    """Load and cross-check brand.yaml and the calendar in `folder` (calendar.yaml, .csv, .xlsx),
    or the given calendar files instead."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: brand folder not found (expected a folder with {BRAND_FILE})")
    brand_source = YamlSource(folder / BRAND_FILE)
    brand: Brand = brand_source.validate(Brand)
    _check_brand(brand, brand_source, folder)
    calendar, sources = load_calendars(folder, brand, calendar_files)
    digest = hashlib.sha256(_generation_bytes(brand_source))
    for source in sources:  # a spreadsheet counts by its posts (calendar_sheet.SheetSource.fingerprint)
        digest.update(source.fingerprint() if hasattr(source, "fingerprint") else source.path.read_bytes())
    return BrandBundle(folder=folder, brand=brand, calendar=calendar, version=digest.hexdigest()[:16])


# brand.yaml sections that say where results go: a new Slack channel or scheduler must not make
# the week's drafts and renders new work, so the version (every key's input) leaves them out.
OUTPUT_SECTIONS = ("notify", "publish")


def _generation_bytes(source: YamlSource) -> bytes:
    """What in brand.yaml shapes the work: its data (not its comments or layout) without the output
    sections, as canonical JSON."""
    import json

    data = (
        {k: v for k, v in source.data.items() if k not in OUTPUT_SECTIONS}
        if isinstance(source.data, dict)
        else source.data
    )
    return json.dumps(data, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8")


def load_calendars(folder: Path, brand: Brand, files: list[Path] | None = None) -> tuple[Calendar, list]:
    """The brand's calendar: calendar.yaml, calendar.csv and calendar.xlsx, whichever exist (a
    spreadsheet may replace the YAML or sit beside it), or only `files`; each checked against the
    brand, then merged, a post id used twice across files being an error where it is repeated."""
    from .calendar_sheet import SHEET_FILES, read_calendar

    if files is None:
        files = [folder / name for name in (CALENDAR_FILE, *SHEET_FILES) if (folder / name).is_file()]
        files = files or [folder / CALENDAR_FILE]  # none: calendar.yaml's "file not found"
    merged, sources, seen = Calendar(), [], {}  # type: ignore[var-annotated]
    for path in files:
        if path.suffix.lower() in (".csv", ".xlsx"):
            calendar, source = read_calendar(path, Calendar)
        else:
            source = YamlSource(path)
            calendar = source.validate(Calendar)
        _check_calendar(calendar, source, brand)
        entries = [
            ("posts", i, p.post_ids() if isinstance(p, RecurringPost) else [p.id]) for i, p in enumerate(calendar.posts)
        ]
        entries += [("recurring", i, p.post_ids()) for i, p in enumerate(calendar.recurring)]
        for section, i, ids in entries:
            for post_id in ids:
                if post_id in seen:
                    raise source.error((section, i, "id"), f"duplicate post id '{post_id}' (also in {seen[post_id]})")
                seen[post_id] = path.name
        merged = Calendar(posts=[*merged.posts, *calendar.posts], recurring=[*merged.recurring, *calendar.recurring])
        sources.append(source)
    return merged, sources


def _check_brand(brand: Brand, source: YamlSource, folder: Path) -> None:
    if brand.disclosure.policy != "never":
        for language in brand.languages:
            if language not in brand.disclosure.lines:
                raise source.error(
                    ("disclosure", "lines"),
                    f"no AI-disclosure line for language '{language}' (policy is '{brand.disclosure.policy}')",
                )
    for platform in brand.disclosure.platforms:
        if platform not in brand.platforms:
            raise source.error(("disclosure", "platforms"), f"platform '{platform}' is not in platforms")
    for name, rules in brand.platforms.items():
        own = PLATFORM_LIMITS.get(name)
        if own is None:
            if rules.max_chars is None or rules.max_hashtags is None:
                raise source.error(
                    ("platforms", name),
                    f"'{name}' is not a known platform ({', '.join(PLATFORM_LIMITS)}): give max_chars and max_hashtags",
                )
            continue
        for field in ("max_chars", "max_hashtags"):
            value = getattr(rules, field)
            if value is not None and value > getattr(own, field):
                raise source.error(
                    ("platforms", name, field), f"{value} is above {name}'s own limit of {getattr(own, field)}"
                )
    for name, audience in brand.audiences.items():
        if audience.language not in brand.languages:
            raise source.error(("audiences", name, "language"), f"language '{audience.language}' is not in languages")
    if brand.notify is not None:
        names = [c.name for c in brand.notify.channels]
        for i, channel in enumerate(brand.notify.channels):
            if names.count(channel.name) > 1:
                raise source.error(
                    ("notify", "channels", i, "name"),
                    f"two channels are named '{channel.name}': give each its own `name:`",
                )
    for i, competitor in enumerate(brand.competitors):
        if competitor.images and not (folder / competitor.images).is_dir():
            raise source.error(("competitors", i, "images"), f"folder {folder / competitor.images} does not exist")


def _check_calendar(calendar: Calendar, source: YamlSource, brand: Brand) -> None:
    if not calendar.posts and not calendar.recurring:
        raise source.error((), "no posts: list dated posts under 'posts' or weekly ones under 'recurring'")
    seen: set[str] = set()
    entries: list[tuple[str, int, PostFields, list[str]]] = [
        ("posts", i, post, [post.id]) for i, post in enumerate(calendar.posts)
    ]
    entries += [("recurring", i, post, post.post_ids()) for i, post in enumerate(calendar.recurring)]
    for section, i, post, ids in entries:
        for post_id in ids:
            if post_id in seen:
                raise source.error((section, i, "id"), f"duplicate post id '{post_id}'")
            seen.add(post_id)
        if isinstance(post, RecurringPost):
            _check_recurrence(post, source, i)
        _check_post(post, source, section, i, brand)


def _check_recurrence(post: RecurringPost, source: YamlSource, i: int) -> None:
    if isinstance(post.every, list) and len(set(post.every)) != len(post.every):
        raise source.error(("recurring", i, "every"), "a weekday is listed twice")
    if post.starts and post.ends and post.ends < post.starts:
        raise source.error(("recurring", i, "ends"), f"ends {post.ends} is before starts {post.starts}")
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(post.brief) if name is not None}
    except ValueError as exc:
        raise source.error(
            ("recurring", i, "brief"), f"bad placeholder: {exc} (write {{{{ and }}}} for braces)"
        ) from None
    unknown = names - set(BRIEF_FIELDS)
    if unknown:
        raise source.error(
            ("recurring", i, "brief"),
            f"unknown placeholder {{{sorted(unknown)[0]}}}: "
            f"a brief may name {', '.join('{' + f + '}' for f in BRIEF_FIELDS)}",
        )


def _check_post(post: PostFields, source: YamlSource, section: str, i: int, brand: Brand) -> None:
    if post.platform not in brand.platforms:
        raise source.error(
            (section, i, "platform"),
            f"platform '{post.platform}' is not in brand.yaml platforms ({', '.join(sorted(brand.platforms))})",
        )
    if post.language not in brand.languages:
        raise source.error(
            (section, i, "language"),
            f"language '{post.language}' is not in brand.yaml languages ({', '.join(brand.languages)})",
        )
    if post.reference_image and not (source.path.parent / post.reference_image).is_file():
        raise source.error(
            (section, i, "reference_image"), f"file {source.path.parent / post.reference_image} does not exist"
        )
    if post.reference_image and brand.render.steps and int(post.strength * brand.render.steps) < 1:
        raise source.error(
            (section, i, "strength"),
            f"strength {post.strength} × {brand.render.steps} steps leaves no denoising step: "
            "raise strength or render.steps",
        )
    if post.audience is not None:
        audience = brand.audiences.get(post.audience)
        if audience is None:
            raise source.error(
                (section, i, "audience"),
                f"audience '{post.audience}' is not in brand.yaml audiences "
                f"({', '.join(brand.audiences) or 'none defined'})",
            )
        if audience.language != post.language:
            raise source.error(
                (section, i, "language"),
                f"the post is in '{post.language}' but audience '{post.audience}' reads '{audience.language}'",
            )


def posts_in_week(bundle: BrandBundle, week: str) -> list[Post]:
    """The calendar's posts in `week`: the dated ones and what the recurring ones make that
    week. An empty week is a user error."""
    monday, sunday = parse_week(week)
    posts = [p for p in bundle.calendar.posts if monday <= p.date <= sunday]
    for day in (monday + dt.timedelta(days=n) for n in range(7)):
        posts += [post for recurring in bundle.calendar.recurring if (post := recurring.on(day))]
    if not posts:
        weeks = sorted({iso_week(p.date) for p in bundle.calendar.posts})
        recurring = " and recurring posts in none of its days" if bundle.calendar.recurring else ""
        from .calendar_sheet import SHEET_FILES

        files = [n for n in (CALENDAR_FILE, *SHEET_FILES) if (bundle.folder / n).is_file()] or [CALENDAR_FILE]
        raise ConfigError(
            f"{bundle.folder / files[0]}{' (and ' + ', '.join(files[1:]) + ')' if files[1:] else ''}: "
            f"no posts in {week} "
            f"(dated posts in: {', '.join(weeks) or 'no week'}{recurring})"
        )
    return sorted(posts, key=lambda p: (p.date, p.id))
