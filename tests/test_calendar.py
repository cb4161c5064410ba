"""Recurring calendar posts and the week a run makes: every week of the demo has work, a bad
weekday, time or placeholder names its line, and the week is read on the brand's clock."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from estampille.brand import load_brand, posts_in_week, week_at
from estampille.cli import main
from estampille.errors import ConfigError

from .conftest import DEMO_BRAND

PARIS = ZoneInfo("Europe/Paris")


def _append(path, text):
    path.write_text(path.read_text() + text)


def _line_of(path, needle):
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def test_every_week_after_the_dated_one_has_the_recurring_posts():
    bundle = load_brand(DEMO_BRAND)
    w50 = posts_in_week(bundle, "2026-W50")
    assert [(p.id, p.date) for p in w50] == [
        ("pain-de-la-semaine", dt.date(2026, 12, 7)),
        ("offre-du-vendredi", dt.date(2026, 12, 11)),
    ]
    assert "(2026-W50)" in w50[0].brief and "2026-12-11" in w50[1].brief  # placeholders filled in
    assert w50[1].time == "16:00" and w50[1].facts
    assert len(posts_in_week(bundle, "2027-W01")) == 2  # across the year boundary
    assert "pain-de-la-semaine" not in {p.id for p in posts_in_week(bundle, "2026-W48")}  # starts 11-30


def test_several_weekdays_skip_dates_and_an_end(brand_copy):
    _append(
        brand_copy / "calendar.yaml",
        """  - id: marche
    every: [tuesday, saturday]
    platform: instagram
    language: fr
    brief: Le marché du {weekday} {date}.
    starts: 2026-12-01
    ends: 2026-12-12
    skip: [2026-12-05]
""",
    )
    bundle = load_brand(brand_copy)
    ids = lambda week: sorted(p.id for p in posts_in_week(bundle, week) if p.id.startswith("marche"))  # noqa: E731
    assert ids("2026-W49") == ["marche-tuesday"]  # Saturday 12-05 skipped
    assert ids("2026-W50") == ["marche-saturday", "marche-tuesday"]
    assert ids("2026-W51") == []  # ended on 12-12
    saturday = next(p for p in posts_in_week(bundle, "2026-W50") if p.id == "marche-saturday")
    assert saturday.brief == "Le marché du saturday 2026-12-12."


GOOD = {"every": "monday", "platform": "instagram", "language": "fr", "brief": "Un post.", "starts": "2026-12-01"}


@pytest.mark.parametrize(
    "field, bad, message",
    [
        ("every", "mondy", "every"),
        ("time", '"7h30"', "time"),
        ("brief", "Le pain du {jour}.", "unknown placeholder {jour}"),
        ("ends", "2026-01-01", "before starts"),
    ],
)
def test_a_bad_recurring_post_names_its_line(brand_copy, field, bad, message):
    calendar = brand_copy / "calendar.yaml"
    entry = {**GOOD, field: bad}
    _append(calendar, "  - id: broken\n" + "".join(f"    {k}: {v}\n" for k, v in entry.items()))
    with pytest.raises(ConfigError) as error:
        load_brand(brand_copy)
    text = str(error.value)
    assert str(calendar) in text and message in text, text
    assert f"line {_line_of(calendar, f'{field}: {bad}')}" in text, text


def test_a_recurring_id_may_not_repeat_a_dated_one(brand_copy):
    _append(
        brand_copy / "calendar.yaml",
        """  - id: levain-lundi
    every: monday
    platform: instagram
    language: fr
    brief: Encore.
""",
    )
    with pytest.raises(ConfigError, match="duplicate post id 'levain-lundi'"):
        load_brand(brand_copy)


def test_the_week_is_read_on_the_brands_clock():
    # Monday 2026-12-07 07:00 in Paris is 06:00 UTC: week 50.
    assert week_at(dt.datetime(2026, 12, 7, 7, 0, tzinfo=PARIS), "Europe/Paris") == "2026-W50"
    assert week_at(dt.datetime(2026, 12, 7, 6, 0, tzinfo=dt.UTC), "Europe/Paris") == "2026-W50"
    # Sunday 23:30 UTC is already Monday in Paris, still Sunday in Montréal.
    late = dt.datetime(2026, 12, 6, 23, 30, tzinfo=dt.UTC)
    assert week_at(late, "Europe/Paris") == "2026-W50"
    assert week_at(late, "America/Montreal") == "2026-W49"
    with pytest.raises(ValueError):
        week_at(dt.datetime(2026, 12, 7, 7, 0), "Europe/Paris")  # a naive time is a bug


def test_a_bad_timezone_names_its_line(brand_copy):
    brand_file = brand_copy / "brand.yaml"
    brand_file.write_text(
        brand_file.read_text().replace("name: Maison Levain\n", "name: Maison Levain\ntimezone: Europe/Lyon\n", 1)
    )
    with pytest.raises(ConfigError, match=rf"line {_line_of(brand_file, 'Europe/Lyon')}\b.*timezone.*IANA"):
        load_brand(brand_copy)


def test_a_malformed_brand_file_under_the_default_engine_is_one_line_and_exit_2(brand_copy, capsys):
    """Validated before Prefect starts: no traceback, no Prefect start-up, nothing written."""
    brand_file = brand_copy / "brand.yaml"
    brand_file.write_text(brand_file.read_text().replace("licence_policy: commercial", "licence_policy: [oops", 1))
    assert main(["run", "--brand", str(brand_copy), "--week", "2026-W50"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {brand_file}, line ") and "Traceback" not in err[0]


def test_a_key_written_twice_in_a_post_names_file_key_and_both_lines(brand_copy):
    calendar = brand_copy / "calendar.yaml"
    text = calendar.read_text()
    calendar.write_text(
        text.replace("    platform: linkedin\n", "    platform: linkedin\n    platform: x  # again\n", 1)
    )
    with pytest.raises(ConfigError) as error:
        load_brand(brand_copy)
    first, second = _line_of(calendar, "platform: linkedin"), _line_of(calendar, "# again")
    assert str(error.value) == (
        f"{calendar}, line {second}: key 'platform' appears twice, on line {first} and "
        f"line {second} (YAML would keep only the last one): merge them or remove one"
    )
