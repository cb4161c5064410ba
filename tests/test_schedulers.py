"""The schedulers' bulk-upload files `publish` writes, each checked against the header, date and
time format and encoding its help page documents (README, "Scheduler exports"); the demo brand
publishes all of them."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re

import pytest

from estampille.brand import load_brand
from estampille.cli import main
from estampille.errors import ConfigError
from estampille.ledger import Ledger
from estampille.review.schedulers import ExportRow, PublishSettings, write_sprout

from .conftest import DEMO_BRAND, DEMO_WEEK, renders_of

APPROVED = ("levain-lundi", "croissant-mercredi", "sourdough-linkedin")


@pytest.fixture
def approved(batch_copy, capsys):
    """The demo week with three posts approved (text and a cleared image each)."""
    ledger = Ledger(batch_copy["settings"].ledger_url)
    events = ledger.events()
    ledger.close()
    for post in APPROVED:
        slot = f"{DEMO_WEEK}/{post}"
        draft = next(e.key for e in events if e.kind == "draft.created" and e.subject == slot)
        assert main(["review", "approve", draft, renders_of(events, slot)[0], "--reviewer", "Camille"]) == 0
    capsys.readouterr()
    return batch_copy


def _read(path, header: bool):
    data = path.read_bytes()
    assert not data.startswith(b"\xef\xbb\xbf")  # plain UTF-8, no byte-order mark
    rows = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))  # strict UTF-8
    return (rows[0], rows[1:]) if header else (None, rows)


def test_the_demo_publishes_every_documented_scheduler(approved, capsys):
    assert load_brand(DEMO_BRAND).brand.publish.schedulers == ["hootsuite", "sprout", "agorapulse"]
    assert main(["publish", "--brand", str(approved["brand"]), "--week", DEMO_WEEK]) == 0
    out = capsys.readouterr().out
    export = approved["run_dir"] / "export"
    insta, linkedin = export / "instagram", export / "linkedin"
    assert sorted(p.name for p in insta.glob("*.csv")) == [
        "agorapulse-instagram.csv",
        "hootsuite-instagram.csv",
        "sprout-instagram.csv",
    ]
    assert (linkedin / "sprout-linkedin.csv").is_file()
    captions = {
        post: (insta / f"{post}.txt").read_text(encoding="utf-8").rstrip("\n")
        for post in ("levain-lundi", "croissant-mercredi")
    }
    assert any(not c.isascii() for c in captions.values())  # accents go through as UTF-8

    # Hootsuite: no header row; "DD/MM/YYYY HH:MM", message, link.
    _, rows = _read(insta / "hootsuite-instagram.csv", header=False)
    assert rows == [
        ["23/11/2026 09:00", captions["levain-lundi"], ""],
        ["25/11/2026 09:00", captions["croissant-mercredi"], ""],
    ]

    # Sprout Social: case-sensitive headers date (dd/mm/yyyy here), time_24hr, message_text.
    header, rows = _read(insta / "sprout-instagram.csv", header=True)
    assert header == ["date", "time_24hr", "message_text"]
    assert rows == [
        ["23/11/2026", "09:00", captions["levain-lundi"]],
        ["25/11/2026", "09:00", captions["croissant-mercredi"]],
    ]
    assert all(
        re.fullmatch(r"\d{2}/\d{2}/\d{4}", r[0]) and re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", r[1]) for r in rows
    )

    # Agorapulse: post_content, post_link, video_url, image_url (public URLs only).
    header, rows = _read(insta / "agorapulse-instagram.csv", header=True)
    assert header == ["post_content", "post_link", "video_url", "image_url"]
    assert [r[0] for r in rows] == [captions["levain-lundi"], captions["croissant-mercredi"]]
    assert all(r[1:] == ["", "", ""] for r in rows)  # no base URL: no image URL invented
    assert "warning: agorapulse-instagram.csv: Agorapulse takes images by public URL only" in out
    assert "scheduler file: " in out and "sprout-linkedin.csv" in out


def test_image_urls_from_the_brand_base_url_and_month_first_dates(approved, capsys):
    brand_file = approved["brand"] / "brand.yaml"
    version = load_brand(approved["brand"]).version
    brand_file.write_text(
        brand_file.read_text(encoding="utf-8").replace(
            "  date_order: day-first",
            "  date_order: month-first\n  image_base_url: https://media.maison-levain.example/out/",
        ),
        encoding="utf-8",
    )
    assert load_brand(approved["brand"]).version == version  # where results go is no new work
    assert main(["publish", "--brand", str(approved["brand"]), "--week", DEMO_WEEK]) == 0
    assert "warning" not in capsys.readouterr().out
    insta = approved["run_dir"] / "export" / "instagram"
    _, rows = _read(insta / "agorapulse-instagram.csv", header=True)
    base = "https://media.maison-levain.example/out/"
    assert [r[3] for r in rows] == [
        f"{base}{DEMO_WEEK}/export/instagram/levain-lundi-1.png",
        f"{base}{DEMO_WEEK}/export/instagram/croissant-mercredi-1.png",
    ]
    for url in (r[3] for r in rows):  # each URL is a file the brand serves
        assert (approved["out"] / "brand" / url.removeprefix(base)).is_file()
    _, rows = _read(insta / "sprout-instagram.csv", header=True)
    assert [r[0] for r in rows] == ["11/23/2026", "11/25/2026"]


def test_sprout_posts_closer_than_ten_minutes_are_named(tmp_path):
    rows = [
        ExportRow("a", dt.date(2026, 11, 23), "09:00", "A", ()),
        ExportRow("b", dt.date(2026, 11, 23), "09:05", "B", ()),
    ]
    path, warnings = write_sprout(tmp_path, "instagram", DEMO_WEEK, rows, PublishSettings(schedulers=["sprout"]))
    assert path.name == "sprout-instagram.csv"
    assert warnings == [
        (
            "sprout-instagram.csv: a and b are less than 10 minutes apart; Sprout Social refuses that: "
            "move one in the calendar"
        )
    ]


@pytest.mark.parametrize(
    "name, message",
    [
        ("buffer", "Buffer: no documented bulk-upload format was found"),
        ("Meta Business Suite", "Meta Business Suite: no documented bulk-upload format was found"),
        ("later", "Later: no documented bulk-upload format was found"),
        ("tweetdeck", "Input should be 'hootsuite', 'sprout' or 'agorapulse'"),
    ],
)
def test_a_scheduler_without_a_documented_format_is_refused_by_name(brand_copy, name, message):
    brand_file = brand_copy / "brand.yaml"
    text = brand_file.read_text(encoding="utf-8")
    line = next(i for i, row in enumerate(text.splitlines(), 1) if row.startswith("  schedulers:"))
    brand_file.write_text(
        text.replace("schedulers: [hootsuite, sprout, agorapulse]", f"schedulers: [hootsuite, {name}]"),
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as error:
        load_brand(brand_copy)
    assert f"brand.yaml, line {line}: field 'publish.schedulers" in str(error.value) and message in str(error.value)


def test_the_review_server_publishes_the_same_files(approved):
    """Publishing from the web page writes the same scheduler files and lists them (no local path)."""
    from .web_harness import make_app, run_url, signed_in

    client, csrf = signed_in(make_app(approved["settings"], approved["brand"].parent))
    page = client.post(run_url("/publish"), data={"csrf": csrf})
    assert page.status_code == 200
    assert "instagram/sprout-instagram.csv" in page.text and "linkedin/hootsuite-linkedin.csv" in page.text
    assert "Agorapulse takes images by public URL only" in page.text
    assert str(approved["out"]) not in page.text
    assert (approved["run_dir"] / "export" / "instagram" / "agorapulse-instagram.csv").is_file()
