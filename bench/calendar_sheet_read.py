"""How long a spreadsheet calendar takes to load, against the same posts in calendar.yaml (the
baseline, measured in the same run): a community manager's year of posts must not slow the check
that runs before every batch (`check_inputs`) or `estampille calendar check`.

    python bench/calendar_sheet_read.py [--rows 2000] [--repeat 3]

Each file holds the same dated posts (French Excel CSV: Windows-1252, `;`, dd/mm/yyyy, decimal
commas; UTF-8 CSV as Google Sheets writes it; XLSX with date and time cells) plus 8 weekly rows,
loaded with every brand check (load_calendars), median of --repeat runs.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from estampille.brand import Brand, YamlSource, load_calendars  # noqa: E402  (after the path insert)

PLATFORMS = ("instagram", "linkedin", "x", "facebook")
LANGS = ("fr", "en")


def posts(n: int) -> list[dict]:
    start = dt.date(2026, 1, 5)
    return [
        {
            "id": f"post-{i}",
            "date": start + dt.timedelta(days=i // 4),
            "time": f"{8 + i % 10:02d}:30",
            "platform": PLATFORMS[i % 4],
            "language": LANGS[i % 2],
            "brief": f"Brief numéro {i}, pain et levain.",
            "facts": [f"{i % 9},50 €", "samedi matin"],
            "strength": 0.6,
        }
        for i in range(n)
    ]


WEEKLY = [
    {"id": f"weekly-{d}", "every": d, "platform": "instagram", "language": "fr", "brief": "Le pain de {week}."}
    for d in ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
]


def write_files(folder: Path, rows: list[dict]) -> dict[str, Path]:
    files = {}
    plan = {"posts": [{**r, "date": r["date"].isoformat()} for r in rows], "recurring": WEEKLY}
    files["calendar.yaml (baseline)"] = folder / "calendar.yaml"
    files["calendar.yaml (baseline)"].write_text(yaml.safe_dump(plan, allow_unicode=True), encoding="utf-8")
    header = ["ID", "Date", "Heure", "Plateforme", "Langue", "Sujet", "Faits", "Force", "Chaque"]

    def table(date_of, strength_of):
        body = [
            [
                r["id"],
                date_of(r["date"]),
                r["time"],
                r["platform"],
                r["language"],
                r["brief"],
                "\n".join(r["facts"]),
                strength_of(r["strength"]),
                "",
            ]
            for r in rows
        ]
        body += [[w["id"], "", "09:00", w["platform"], w["language"], w["brief"], "", "", w["every"]] for w in WEEKLY]
        return [header] + body

    files["French Excel CSV (cp1252, ;)"] = folder / "french.csv"
    with files["French Excel CSV (cp1252, ;)"].open("w", newline="", encoding="cp1252") as f:
        csv.writer(f, delimiter=";").writerows(
            table(lambda d: d.strftime("%d/%m/%Y"), lambda s: str(s).replace(".", ","))
        )
    files["Google Sheets CSV (UTF-8, ,)"] = folder / "sheets.csv"
    with files["Google Sheets CSV (UTF-8, ,)"].open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(table(lambda d: d.isoformat(), str))
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    for line in table(lambda d: d, lambda s: s):
        sheet.append(
            [
                dt.datetime.strptime(v, "%H:%M").time() if isinstance(v, str) and len(v) == 5 and v[2] == ":" else v
                for v in line
            ]
        )
    files["XLSX (date and time cells)"] = folder / "calendar.xlsx"
    book.save(files["XLSX (date and time cells)"])
    return files


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        shutil.copy(ROOT / "brand_assets" / "demo" / "brand.yaml", folder / "brand.yaml")
        brand = YamlSource(folder / "brand.yaml").validate(Brand)
        files = write_files(folder, posts(args.rows))
        results = {}
        for label, path in files.items():
            times = []
            for _ in range(args.repeat):
                started = time.perf_counter()
                calendar, _ = load_calendars(folder, brand, [path])
                times.append(time.perf_counter() - started)
            assert len(calendar.posts) == args.rows and len(calendar.recurring) == len(WEEKLY), label
            results[label] = statistics.median(times)
    base = results["calendar.yaml (baseline)"]
    rows = args.rows + len(WEEKLY)
    print(
        f"{rows} calendar rows ({args.rows} dated, {len(WEEKLY)} weekly), load_calendars with brand checks, "
        f"median of {args.repeat}"
    )
    print(f"{'file':34} {'seconds':>8} {'rows/s':>9} {'ratio':>6}")
    for label, seconds in results.items():
        print(f"{label:34} {seconds:8.3f} {rows / seconds:9.0f} {seconds / base:6.2f}")


if __name__ == "__main__":
    main()
