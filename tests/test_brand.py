"""Brand and calendar files: the demo is valid; every kind of mistake names file, field and line,
exits with status 2 through the CLI, and writes nothing."""

from __future__ import annotations

import datetime as dt

import pytest

from estampille.brand import load_brand, parse_week, posts_in_week
from estampille.cli import main
from estampille.errors import ConfigError

from .conftest import DEMO_BRAND, DEMO_WEEK


def test_demo_brand_is_valid_and_plans_a_bilingual_multi_platform_week():
    bundle = load_brand(DEMO_BRAND)
    posts = posts_in_week(bundle, DEMO_WEEK)
    assert len(posts) >= 5
    assert {p.platform for p in posts} >= {"instagram", "linkedin"}
    assert {p.language for p in posts} == {"fr", "en"}
    assert bundle.brand.licence_policy == "commercial"
    assert set(bundle.brand.disclosure.lines) == {"fr", "en"}
    images = [p for folder in bundle.competitor_folders().values() for p in folder.glob("*.jpg")]
    assert len(images) >= 30


def test_parse_week_gives_monday_to_sunday():
    assert parse_week("2026-W48") == (dt.date(2026, 11, 23), dt.date(2026, 11, 29))
    with pytest.raises(ConfigError, match="2026-W48"):
        parse_week("48/2026")
    with pytest.raises(ConfigError, match="no ISO week 54"):
        parse_week("2026-W54")


def _replace(path, old, new):
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def _line_of(path, needle):
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def test_bad_yaml_names_file_and_line(brand_copy):
    brand_file = brand_copy / "brand.yaml"
    _replace(brand_file, "languages: [fr, en]", "languages: [fr, en")
    with pytest.raises(ConfigError) as error:
        load_brand(brand_copy)
    assert str(brand_file) in str(error.value) and "invalid YAML" in str(error.value)
    assert "line " in str(error.value)


def test_missing_field_names_field_and_line(brand_copy):
    brand_file = brand_copy / "brand.yaml"
    _replace(brand_file, "  credit_line: Maison Levain (image generated with AI)\n", "")
    with pytest.raises(ConfigError) as error:
        load_brand(brand_copy)
    message = str(error.value)
    assert "field 'rights.credit_line'" in message and "Field required" in message
    assert f"line {_line_of(brand_file, 'rights:')}" in message


def test_wrong_type_names_field_line_and_value(brand_copy):
    brand_file = brand_copy / "brand.yaml"
    _replace(brand_file, "x: {max_hashtags: 2,", "x: {max_hashtags: lots,")
    with pytest.raises(ConfigError) as error:
        load_brand(brand_copy)
    message = str(error.value)
    assert "field 'platforms.x.max_hashtags'" in message and "'lots'" in message
    assert f"line {_line_of(brand_file, 'max_hashtags: lots')}" in message


def test_misspelt_key_is_an_error_not_ignored(brand_copy):
    _replace(brand_copy / "brand.yaml", "banned_terms:", "baned_terms:")
    with pytest.raises(ConfigError, match="baned_terms"):
        load_brand(brand_copy)


@pytest.mark.parametrize(
    "old,new,bad",
    [("platform: linkedin", "platform: myspace", "myspace"), ("audience: visitors", "audience: martians", "martians")],
)
def test_calendar_post_naming_something_unknown_names_its_line(brand_copy, old, new, bad):
    calendar = brand_copy / "calendar.yaml"
    _replace(calendar, old, new)
    with pytest.raises(ConfigError) as error:
        load_brand(brand_copy)
    assert bad in str(error.value) and f"line {_line_of(calendar, bad)}" in str(error.value)


def test_week_without_posts_lists_the_weeks_that_have_some():
    # Before the demo's recurring posts start (2026-11-30), only W48 has posts.
    with pytest.raises(ConfigError, match="dated posts in: 2026-W48 and recurring posts in none of its days"):
        posts_in_week(load_brand(DEMO_BRAND), "2026-W40")


@pytest.mark.parametrize(
    "old,new",
    [
        ("languages: [fr, en]", "languages: [fr, en"),  # bad YAML
        ("licence_policy: commercial", "licence_policy: sometimes"),  # wrong value
        ("name: Maison Levain\n", ""),  # missing field
    ],
)
def test_cli_exits_2_and_writes_nothing(brand_copy, isolated, capsys, old, new):
    _replace(brand_copy / "brand.yaml", old, new)
    status = main(["run", "--brand", str(brand_copy), "--week", DEMO_WEEK, "--engine", "plain"])
    err = capsys.readouterr().err
    assert status == 2
    assert "brand.yaml" in err and "line " in err and "Traceback" not in err
    assert not (isolated / "out").exists()


def test_a_key_written_twice_is_an_error_naming_file_key_and_both_lines(brand_copy, isolated, capsys):
    """YAML keeps the last of two equal keys: a second `render:` block would wipe the first and the
    batch would run with it. It is refused, through the CLI, before anything is written."""
    brand_file = brand_copy / "brand.yaml"
    first = _line_of(brand_file, "render:")
    brand_file.write_text(brand_file.read_text() + "\nrender:\n  model: builtin:tiny-sdxl\n")
    second = _line_of(brand_file, "model: builtin:tiny-sdxl") - 1
    status = main(["run", "--brand", str(brand_copy), "--week", DEMO_WEEK, "--engine", "plain"])
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err
    assert f"{brand_file}, line {second}: key 'render' appears twice, on line {first} and line {second}" in err
    assert not (isolated / "out").exists()


def test_a_nested_key_written_twice_is_an_error_but_a_merge_key_override_is_not(brand_copy):
    brand_file = brand_copy / "brand.yaml"
    _replace(brand_file, "  steps: 4\n", "  steps: 4\n  guidance: 2.0\n  steps: 8\n")
    with pytest.raises(ConfigError) as error:
        load_brand(brand_copy)
    assert (
        f"line {_line_of(brand_file, 'steps: 8')}: key 'steps' appears twice, on line "
        f"{_line_of(brand_file, 'steps: 4')} and"
    ) in str(error.value)
    _replace(brand_file, "  steps: 4\n  guidance: 2.0\n  steps: 8\n", "  steps: 4\n")
    # An anchor merged with `<<` and one key overridden is YAML's way of sharing settings: accepted.
    brand_file.write_text(brand_file.read_text().replace("render:\n", "render:\n  <<: {steps: 2}\n", 1))
    assert load_brand(brand_copy).brand.render.steps == 4
