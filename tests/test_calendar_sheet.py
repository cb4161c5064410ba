"""The calendar from a spreadsheet: French Excel CSV, XLSX with serial dates, time cells and merged
cells, Notion and Airtable exports; every bad cell names the file, row and column with the fix,
and nothing is written."""

from __future__ import annotations

import datetime as dt

import pytest
from openpyxl import Workbook

from estampille.brand import load_brand, posts_in_week
from estampille.cli import main
from estampille.errors import ConfigError

WEEK = "2026-W48"

# What Excel in French writes with "CSV (séparateur : point-virgule)": Windows-1252, `;`, day-first
# dates, decimal commas, a title row above the header, and the empty rows of a formatted table.
FRENCH_EXCEL = (
    "Calendrier éditorial Maison Levain;;;;;;;;\r\n"
    "Date;Heure;Plateforme;Langue;Public;Sujet;Faits;Image de référence;Force\r\n"
    "23/11/2026;9h30;Instagram;Français;lyon-families;Le pain au levain de la semaine, façonné à la main.;"
    '"levain de 12 ans\nprix: 4,50 €";;\r\n'
    "24/11/2026;18:00;LinkedIn;anglais;;Meet Camille, our head baker.;;;\r\n"
    "28/11/2026;10:00;Instagram;FR;lyon-families;Atelier pain pour enfants samedi matin.;samedi matin;"
    "references/atelier-table.jpg;0,75\r\n"
    ";;;;;;;;\r\n"
    ";;;;;;;;\r\n"
)

NOTION = (
    "\ufeffName,Date,Platform,Language,Brief,Status,Tags\n"
    'Croissant du mercredi,"November 25, 2026 8:15 AM","Instagram, Facebook",fr,'
    '"Le croissant au beurre AOP, feuilletage en 27 couches.",Ready,viennoiserie\n'
    'Advent loaf,"November 27, 2026",X (Twitter),English,Our winter spice loaf is back for December.,Draft,\n'
)


def _use_only(brand_dir, name, data: bytes):
    (brand_dir / "calendar.yaml").unlink()
    (brand_dir / name).write_bytes(data)
    return brand_dir / name


def test_a_french_excel_csv_plans_the_week(brand_copy, capsys):
    _use_only(brand_copy, "calendar.csv", FRENCH_EXCEL.encode("cp1252"))
    posts = posts_in_week(load_brand(brand_copy), WEEK)
    assert [(p.id, p.date, p.time, p.platform, p.language) for p in posts] == [
        ("2026-11-23-instagram-fr", dt.date(2026, 11, 23), "09:30", "instagram", "fr"),
        ("2026-11-24-linkedin-en", dt.date(2026, 11, 24), "18:00", "linkedin", "en"),
        ("2026-11-28-instagram-fr", dt.date(2026, 11, 28), "10:00", "instagram", "fr"),
    ]
    first, _, atelier = posts
    assert first.brief == "Le pain au levain de la semaine, façonné à la main."  # cp1252 accents read
    assert first.facts == ["levain de 12 ans", "prix: 4,50 €"]  # one fact per line, commas kept
    assert first.audience == "lyon-families"
    assert atelier.reference_image == "references/atelier-table.jpg" and atelier.strength == 0.75

    assert main(["calendar", "check", str(brand_copy / "calendar.csv"), "--week", WEEK]) == 0
    out = capsys.readouterr().out
    assert "Windows-1252" in out and "';'" in out
    assert "Mon 23/11/2026 09:30  instagram  fr" in out and "row 3" in out
    assert "3 posts in 2026-W48" in out


def test_an_xlsx_with_serial_dates_time_cells_and_merged_cells(brand_copy):
    book = Workbook()
    sheet = book.active
    sheet.title = "Planning S48"
    sheet["A1"] = "Semaine 48"
    sheet.merge_cells("A1:G1")  # a title over the table
    sheet["A2"], sheet["C2"] = "Publication", "Contenu"
    sheet.merge_cells("A2:B2")  # a group header over Date and Time
    sheet.merge_cells("C2:G2")
    for column, name in zip(
        "ABCDEFG", ("Date", "Time", "Platform", "Language", "Brief", "Every", "Facts"), strict=True
    ):
        sheet[f"{column}3"] = name
    sheet["A4"] = 46349  # 2026-11-23 as a bare serial number (a General cell)
    sheet["B4"] = dt.time(8, 45)  # a time cell
    sheet["A5"] = dt.datetime(2026, 11, 25)  # a date cell...
    sheet.merge_cells("A5:A6")  # ...merged over two posts of the same day
    sheet["B5"], sheet["B6"] = 0.375, "17h"  # 09:00 as Excel stores it; a typed time
    sheet["B7"] = dt.time(16, 0)
    rows = [
        ("instagram", "fr", "Le pain au levain de la semaine.", None, "levain;4,50 €"),
        ("instagram", "fr", "Le croissant du mercredi.", None, None),
        ("linkedin", "en", "Meet Camille, our head baker.", None, None),
        ("facebook", "fr", "L'offre du vendredi {date}.", "vendredi", None),
    ]
    for r, values in enumerate(rows, start=4):
        for column, value in zip("CDEFG", values, strict=False):
            sheet[f"{column}{r}"] = value
    sheet["A7"] = dt.date(2026, 11, 23)  # a weekly row: its date is when it starts
    sheet.row_dimensions[30].height = 20  # formatting far below: empty trailing rows
    book.save(brand_copy / "calendar.xlsx")
    (brand_copy / "calendar.yaml").unlink()

    posts = posts_in_week(load_brand(brand_copy), WEEK)
    assert [(p.id, p.date, p.time, p.platform) for p in posts] == [
        ("2026-11-23-instagram-fr", dt.date(2026, 11, 23), "08:45", "instagram"),
        ("2026-11-25-instagram-fr", dt.date(2026, 11, 25), "09:00", "instagram"),
        ("2026-11-25-linkedin-en", dt.date(2026, 11, 25), "17:00", "linkedin"),
        ("friday-facebook-fr", dt.date(2026, 11, 27), "16:00", "facebook"),
    ]
    assert posts[0].facts == ["levain", "4,50 €"]
    assert posts[-1].brief == "L'offre du vendredi 2026-11-27."
    assert len(posts_in_week(load_brand(brand_copy), "2026-W50")) == 1  # the weekly row comes back


def test_a_notion_export_with_its_title_column_and_date_times(brand_copy):
    _use_only(brand_copy, "calendar.csv", NOTION.encode("utf-8"))
    posts = posts_in_week(load_brand(brand_copy), WEEK)
    assert [(p.id, p.date, p.time, p.platform, p.language) for p in posts] == [  # a multi-select: a post each
        ("croissant-du-mercredi-facebook", dt.date(2026, 11, 25), "08:15", "facebook", "fr"),
        ("croissant-du-mercredi-instagram", dt.date(2026, 11, 25), "08:15", "instagram", "fr"),
        ("advent-loaf", dt.date(2026, 11, 27), "09:00", "x", "en"),
    ]


def test_an_airtable_export_beside_the_yaml_calendar(brand_copy):
    (brand_copy / "calendar.csv").write_text(
        "Post ID,Publish date,Publish time,Channel,Language,Content,Reference image,Strength\n"
        "atelier-photo,2026-11-26,11:00,instagram,fr,Atelier du jeudi.,"
        "atelier-table.jpg (https://dl.airtable.com/x/atelier-table.jpg),0.7\n",
        encoding="utf-8",
    )
    (brand_copy / "atelier-table.jpg").write_bytes((brand_copy / "references" / "atelier-table.jpg").read_bytes())
    posts = {p.id: p for p in posts_in_week(load_brand(brand_copy), WEEK)}
    assert "levain-lundi" in posts  # calendar.yaml still read
    assert posts["atelier-photo"].reference_image == "atelier-table.jpg"


BAD_CELLS = [
    # (row 3 is the first post: row 1 title, row 2 header)
    ("31/02/2026", None, "row 3, column A ('Date'): '31/02/2026' is not a real date"),
    ("11/23/2026", None, "row 3, column A ('Date'): '11/23/2026' reads as month/day (US order); write the day first"),
    ("lundi prochain", None, "row 3, column A ('Date'): 'lundi prochain' is not a date: write 23/11/2026"),
    (None, ("9h30", "25h00"), "row 3, column B ('Heure'): '25h00' is not a time: write 09:00 or 9h30"),
    (
        None,
        ("Instagram;Français", "MySpace;Français"),
        "row 3, column C ('Plateforme'): platform 'myspace' is not in brand.yaml platforms",
    ),
    (None, ("Français", "Klingon"), "row 3, column D ('Langue'): language 'klingon' is not in brand.yaml languages"),
    (None, ("lyon-families;Le pain", "lyon;Le pain"), "row 3, column E ('Public'): audience 'lyon' is not in"),
    (None, ("0,75", "beaucoup"), "row 5, column I ('Force'): 'beaucoup' is not a number: write a strength"),
    (None, ("0,75", "1,5"), "row 5, column I ('Force'): Input should be less than or equal to 1"),
    (None, ("references/atelier-table.jpg", "references/absent.jpg"), "row 5, column H ('Image de référence'): file"),
]


@pytest.mark.parametrize("date, replace, message", BAD_CELLS)
def test_a_bad_cell_names_row_and_column_and_nothing_is_written(brand_copy, tmp_path, capsys, date, replace, message):
    text = FRENCH_EXCEL
    if date:
        text = text.replace("23/11/2026", date)
    if replace:
        text = text.replace(*replace, 1)
    path = _use_only(brand_copy, "calendar.csv", text.encode("cp1252"))
    with pytest.raises(ConfigError) as error:
        load_brand(brand_copy)
    assert str(error.value).startswith(f"{path}, {message}"), str(error.value)
    assert main(["run", "--brand", str(brand_copy), "--week", WEEK, "--engine", "plain"]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing written


def test_missing_columns_and_duplicates_across_files_are_named(brand_copy):
    (brand_copy / "calendar.csv").write_text("Date,Platform,Text\n2026-11-23,instagram,Bonjour\n", encoding="utf-8")
    with pytest.raises(
        ConfigError,
        match=r"row 1: no column for language, brief \(columns found: Date, Platform, "
        r"Text\); name them e.g. language: Language",
    ):
        load_brand(brand_copy)
    (brand_copy / "calendar.csv").write_text(
        "ID;Date;Platform;Language;Brief\nlevain-lundi;23/11/2026;instagram;fr;Encore le levain.\n", encoding="utf-8"
    )
    with pytest.raises(
        ConfigError,
        match=r"calendar.csv, row 2, column A \('ID'\): duplicate post id 'levain-lundi' "
        r"\(also in calendar.yaml\)",
    ):
        load_brand(brand_copy)
    (brand_copy / "calendar.csv").write_text(
        "Date;Platform;Language;Brief;Every\n;instagram;fr;Sans date;\n", encoding="utf-8"
    )
    with pytest.raises(
        ConfigError,
        match=r"row 2, column A \('Date'\): no date: give the post's date .*or weekdays "
        r"under 'Every'",
    ):
        load_brand(brand_copy)
    (brand_copy / "calendar.csv").write_text(
        "Date;Platform;Language;Brief;Every\n;instagram;fr;Chaque semaine;lundi et jeudy\n", encoding="utf-8"
    )
    with pytest.raises(ConfigError, match=r"row 2, column E \('Every'\): 'jeudy' is not a weekday"):
        load_brand(brand_copy)


def test_calendar_check_on_a_file_outside_the_brand_folder(brand_copy, tmp_path, capsys):
    sheet = tmp_path / "export.csv"
    sheet.write_bytes(NOTION.encode("utf-8"))
    assert main(["calendar", "check", str(sheet), "--brand", str(brand_copy), "--week", WEEK]) == 0
    out = capsys.readouterr().out
    assert "Wed 25/11/2026 08:15  instagram  fr  -  croissant-du-mercredi-instagram  (row 2)" in out
    assert "ignored columns: Status, Tags" in out
    assert main(["calendar", "check", str(sheet), "--brand", str(brand_copy), "--week", "2026-W50"]) == 2
    assert "no posts in 2026-W50" in capsys.readouterr().err


def test_the_separator_is_the_one_that_makes_a_header(brand_copy):
    """Briefs full of the other separator (commas in a ';' file, semicolons in a ',' file) do not
    mislead the reader, and a UTF-16 "Unicode text" export (tabs) reads too."""
    comma = (
        "Date,Platform,Language,Brief\n"
        '23/11/2026,instagram,fr,"Pain; levain; croûte; mie; farine; eau; sel; temps; four; bois"\n'
    )
    semicolon = "Date;Platform;Language;Brief\n23/11/2026;instagram;fr;Pain, levain, croûte, mie, farine, eau, sel\n"
    tabs = "Date\tPlatform\tLanguage\tBrief\n23/11/2026\tinstagram\tfr\tPain, levain; croûte\n"
    for data in (comma.encode("utf-8"), semicolon.encode("cp1252"), tabs.encode("utf-16")):
        (brand_copy / "calendar.yaml").unlink(missing_ok=True)
        (brand_copy / "calendar.csv").write_bytes(data)
        [post] = posts_in_week(load_brand(brand_copy), WEEK)
        assert post.brief.startswith("Pain") and post.platform == "instagram" and post.date == dt.date(2026, 11, 23)


def test_a_re_export_with_only_other_columns_changed_is_no_new_work(brand_copy):
    """Notion and Airtable exports carry Status and "Last edited" columns that change every time:
    the brand's version (every draft's key) follows the posts, not the file's bytes."""
    _use_only(brand_copy, "calendar.csv", NOTION.encode("utf-8"))
    version = load_brand(brand_copy).version
    reexport = NOTION.replace(",Ready,", ",Published,").replace("Status,Tags", "Status,Tags,Last edited")
    (brand_copy / "calendar.csv").write_bytes(reexport.encode("utf-8-sig") + b",,,,,,,\n,,,,,,,\n")
    assert load_brand(brand_copy).version == version
    (brand_copy / "calendar.csv").write_bytes(NOTION.replace("8:15 AM", "8:30 AM").encode("utf-8"))
    assert load_brand(brand_copy).version != version  # a post changed: its work is redone
