"""The brand's calendar kept in a spreadsheet: `calendar.csv` or `calendar.xlsx` in the brand folder.

Community managers plan the week in Google Sheets, Excel, Notion or Airtable, not in YAML. What
those tools export is read as it comes: a UTF-8 byte-order mark, Excel's French CSV (`;`, `sep=;`
first line, Windows-1252, `23/11/2026`, `0,6`), UTF-16 "Unicode text", XLSX date and time cells or
bare serial numbers, title rows above the header, merged header cells, empty trailing rows, Notion's
`November 23, 2026 9:00 AM` and its `Name` title column, Airtable's `photo.jpg (https://…)`
attachments. Column names are matched in English and French, case and accents aside.

Each row becomes the same post a `calendar.yaml` entry would (a weekday under "Every" makes it a
recurring one), validated by the same models and checks, so a bad cell stops loading with the
file, the row and the column as the spreadsheet shows them, and the fix. Reading writes nothing.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .errors import ConfigError

SHEET_FILES = ("calendar.csv", "calendar.xlsx")

# Canonical field -> accepted column names (normalised: lower case, no accents, words split by
# one space), best first: when two columns name the same field, the better name wins.
COLUMNS: dict[str, tuple[str, ...]] = {
    "id": ("id", "post id", "slot", "identifiant", "name", "nom", "title", "titre", "post"),
    "date": (
        "date",
        "publish date",
        "publication date",
        "date de publication",
        "post date",
        "scheduled date",
        "publish on",
        "day",
        "jour",
        "publication",
        "when",
        "quand",
    ),
    "time": ("time", "heure", "publish time", "posting time", "heure de publication", "hour", "horaire", "time 24h"),
    "platform": (
        "platform",
        "plateforme",
        "network",
        "reseau",
        "reseau social",
        "social network",
        "channel",
        "canal",
        "social",
    ),
    "language": ("language", "langue", "lang", "locale"),
    "audience": ("audience", "public", "cible", "target", "target audience"),
    "brief": ("brief", "content", "contenu", "topic", "sujet", "description", "idea", "idee", "theme", "post idea"),
    "facts": ("facts", "faits", "key facts", "facts allowed", "offer", "offre", "details", "infos"),
    "reference_image": (
        "reference image",
        "reference",
        "image de reference",
        "reference photo",
        "ref image",
        "inspiration",
    ),
    "strength": ("strength", "force", "intensite", "image strength"),
    "every": ("every", "repeat", "repeats", "recurring", "recurrence", "chaque", "repeter", "tous les", "weekly on"),
    "starts": ("starts", "start", "start date", "from", "debut", "date de debut", "a partir du"),
    "ends": ("ends", "end", "end date", "until", "fin", "date de fin", "jusqu au"),
    "skip": ("skip", "except", "sauf", "exceptions", "skip dates"),
}
REQUIRED = ("platform", "language", "brief")

WEEKDAY_NAMES = {
    "monday": "monday",
    "mon": "monday",
    "lundi": "monday",
    "lun": "monday",
    "tuesday": "tuesday",
    "tue": "tuesday",
    "tues": "tuesday",
    "mardi": "tuesday",
    "mar": "tuesday",
    "wednesday": "wednesday",
    "wed": "wednesday",
    "mercredi": "wednesday",
    "mer": "wednesday",
    "thursday": "thursday",
    "thu": "thursday",
    "thurs": "thursday",
    "jeudi": "thursday",
    "jeu": "thursday",
    "friday": "friday",
    "fri": "friday",
    "vendredi": "friday",
    "ven": "friday",
    "saturday": "saturday",
    "sat": "saturday",
    "samedi": "saturday",
    "sam": "saturday",
    "sunday": "sunday",
    "sun": "sunday",
    "dimanche": "sunday",
    "dim": "sunday",
}
MONTHS = {
    name: number
    for number, names in enumerate(
        (
            ("january", "jan", "janvier", "janv"),
            ("february", "feb", "fevrier", "fevr", "fev"),
            ("march", "mar", "mars"),
            ("april", "apr", "avril", "avr"),
            ("may", "mai"),
            ("june", "jun", "juin"),
            ("july", "jul", "juillet", "juil"),
            ("august", "aug", "aout"),
            ("september", "sep", "sept", "septembre"),
            ("october", "oct", "octobre"),
            ("november", "nov", "novembre"),
            ("december", "dec", "decembre"),
        ),
        start=1,
    )
    for name in names
}
PLATFORM_NAMES = {
    "twitter": "x",
    "x (twitter)": "x",
    "twitter/x": "x",
    "x/twitter": "x",
    "x.com": "x",
    "ig": "instagram",
    "insta": "instagram",
    "fb": "facebook",
    "li": "linkedin",
    "tik tok": "tiktok",
}
LANGUAGE_NAMES = {
    "francais": "fr",
    "french": "fr",
    "anglais": "en",
    "english": "en",
    "deutsch": "de",
    "german": "de",
    "allemand": "de",
    "espanol": "es",
    "spanish": "es",
    "espagnol": "es",
    "italiano": "it",
    "italian": "it",
    "italien": "it",
    "nederlands": "nl",
    "dutch": "nl",
    "portugues": "pt",
    "portuguese": "pt",
    "portugais": "pt",
}
DATE_EXAMPLE = "23/11/2026 or 2026-11-23"
# An Excel serial day number in a plain (General) cell: 1954 to 2119, nothing a count could be mistaken for.
SERIAL_RANGE = (20000, 80000)
HEADER_SEARCH_ROWS = 10


def normalise(name: Any) -> str:
    """'Date de publication ' -> 'date de publication'; 'reference_image' -> 'reference image'."""
    text = unicodedata.normalize("NFKD", str(name or "")).encode("ascii", "ignore").decode().lower()
    return " ".join(re.sub(r"[^a-z0-9/()]+", " ", text).split())


def column_letter(index: int) -> str:
    """0 -> A, 25 -> Z, 26 -> AA: the column as the spreadsheet shows it."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


class CellError(ValueError):
    """A cell that cannot be read; the message says what was expected (the fix)."""


@dataclass
class SheetSource:
    """One spreadsheet calendar: where each post came from, so that every later check (brand
    platforms, languages, audiences, duplicate ids) names the row and column. Duck-types the
    `YamlSource` interface that brand.py's checks use (`path`, `error`)."""

    path: Path
    header_row: int = 0
    columns: dict[str, int] = field(default_factory=dict)  # field -> 0-based column
    headers: list[str] = field(default_factory=list)  # the header row as written
    rows: dict[tuple[str, int], int] = field(default_factory=dict)  # ("posts"|"recurring", i) -> row
    ignored: list[str] = field(default_factory=list)  # columns that are no calendar field
    encoding: str = ""
    delimiter: str = ""
    sheet: str = ""
    content: bytes = b""  # the posts as read, canonical: what the brand's version hashes

    def fingerprint(self) -> bytes:
        """What enters the brand's version: the posts, not the file's bytes, so a re-export whose
        Status or "Last edited" column changed, or whose layout did, is no new work."""
        return self.content

    def where(self, row: int, field_name: str | None) -> str:
        place = f"{self.path}" + (f" (sheet '{self.sheet}')" if self.sheet else "") + f", row {row}"
        if field_name in self.columns:
            index = self.columns[field_name]
            place += f", column {column_letter(index)} ('{self.headers[index]}')"
        elif field_name:
            place += f", field '{field_name}'"
        return place

    def error(self, loc: tuple[Any, ...], message: str) -> ConfigError:
        if len(loc) < 2 or (loc[0], loc[1]) not in self.rows:
            return ConfigError(f"{self.path}: {message}")
        field_name = str(loc[2]) if len(loc) > 2 else None
        return ConfigError(f"{self.where(self.rows[(loc[0], loc[1])], field_name)}: {message}")

    def row_of(self, section: str, index: int) -> int | None:
        return self.rows.get((section, index))


def read_calendar(path: Path, model: type[Any]):
    """Read, convert and validate a spreadsheet calendar as `model` (brand.Calendar, handed in so
    that this reader does not import the brand module that calls it): (calendar, SheetSource). The
    brand-level checks (platforms, languages, audiences, duplicates) are brand.py's, run on the result."""
    Calendar = model  # noqa: N806

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: file not found")
    source = SheetSource(path)
    grid = _read_xlsx(path, source) if path.suffix.lower() == ".xlsx" else _read_csv(path, source)
    data = _to_calendar_data(grid, source)
    try:
        calendar = Calendar.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        message = first["msg"]
        if first["type"] != "missing" and "input" in first:
            message += f" (got {first['input']!r})"
        raise source.error(tuple(first["loc"]), message) from None
    import json

    source.content = json.dumps(calendar.model_dump(mode="json"), sort_keys=True, ensure_ascii=False).encode()
    return calendar, source


# ------------------------------------------------------------------ reading the files
def _read_csv(path: Path, source: SheetSource) -> list[tuple[int, list[Any]]]:
    data = path.read_bytes()
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        text, source.encoding = data.decode("utf-16"), "UTF-16"  # Excel's "Unicode text"
    else:
        try:
            text, source.encoding = data.decode("utf-8-sig"), "UTF-8"
        except UnicodeDecodeError:
            try:  # Excel on Windows, "CSV (;)"
                text, source.encoding = data.decode("cp1252"), "Windows-1252"
            except UnicodeDecodeError as exc:
                raise ConfigError(
                    f"{path}: neither UTF-8 nor Windows-1252 text (byte {exc.start}): export the "
                    "sheet again as 'CSV UTF-8'"
                ) from None
    lines = text.splitlines(keepends=True)
    delimiter = None
    if lines and lines[0].strip().lower().startswith("sep=") and len(lines[0].strip()) == 5:
        delimiter = lines[0].strip()[4]  # Excel's own `sep=;` hint line
        lines = lines[1:]
    body = "".join(lines)
    if delimiter is None:
        delimiter = _guess_delimiter("".join(lines[: HEADER_SEARCH_ROWS * 4]))
    source.delimiter = delimiter
    reader = csv.reader(io.StringIO(body, newline=""), delimiter=delimiter)
    try:
        return [(number, row) for number, row in enumerate(reader, start=1)]
    except csv.Error as exc:
        raise ConfigError(f"{path}, row {reader.line_num}: not readable as CSV ({exc})") from None


def _guess_delimiter(sample: str) -> str:
    """The separator that makes a header naming the most calendar fields (a brief full of commas
    or semicolons cannot mislead it, as it can a character count); csv.Sniffer when none does."""
    scores = {}
    for candidate in (",", ";", "\t", "|"):
        try:
            rows = list(enumerate(csv.reader(io.StringIO(sample, newline=""), delimiter=candidate), start=1))
        except csv.Error:
            continue
        at = _header_index(rows)
        if at is not None:
            scores[candidate] = len({f[0] for c in rows[at][1] if (f := _field_of(c))})
    if scores:
        return max(scores, key=lambda c: scores[c])
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def _read_xlsx(path: Path, source: SheetSource) -> list[tuple[int, list[Any]]]:
    import zipfile

    import openpyxl  # type: ignore[import-untyped]

    try:
        book = openpyxl.load_workbook(path, data_only=True)  # cached formula results, as Excel shows them
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not an Excel .xlsx workbook ({exc}): save it as .xlsx or export CSV") from None
    try:
        for sheet in book.worksheets:
            width = sheet.max_column  # computed by openpyxl on each access
            grid = [
                list(row) + [None] * (width - len(row))
                for row in sheet.iter_rows(min_row=1, min_col=1, max_col=width, values_only=True)
            ]
            for cells in sheet.merged_cells.ranges:  # a merged cell holds its value top-left only
                value = grid[cells.min_row - 1][cells.min_col - 1]
                for r in range(cells.min_row - 1, cells.max_row):
                    for c in range(cells.min_col - 1, cells.max_col):
                        grid[r][c] = value
            rows = list(enumerate(grid, start=1))
            if _header_index(rows) is not None:
                source.sheet = sheet.title if len(book.worksheets) > 1 else ""
                return rows
        return list(enumerate([[c.value for c in row] for row in book.worksheets[0].iter_rows()], start=1))
    finally:
        book.close()


# ------------------------------------------------------------------ header and rows
def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _field_of(header: Any) -> tuple[str, int] | None:
    name = normalise(header)
    name = re.sub(r"\s*\(.*\)$", "", name) or name  # "Heure (24h)" -> "heure"
    for field_name, aliases in COLUMNS.items():
        if name in aliases:
            return field_name, aliases.index(name)
    return None


def _header_index(rows: list[tuple[int, list[Any]]]) -> int | None:
    """The header is the row, among the first non-empty ones, naming the most calendar fields
    (title rows and a merged group row above it are skipped)."""
    best, best_count = None, 1
    seen = 0
    for i, (_, cells) in enumerate(rows):
        if all(_empty(c) for c in cells):
            continue
        seen += 1
        if seen > HEADER_SEARCH_ROWS:
            break
        count = len({f[0] for c in cells if (f := _field_of(c))})
        if count > best_count:
            best, best_count = i, count
    return best


def _to_calendar_data(rows: list[tuple[int, list[Any]]], source: SheetSource) -> dict:
    header_at = _header_index(rows)
    if header_at is None:
        raise ConfigError(
            f"{source.path}: no header row found in the first {HEADER_SEARCH_ROWS} rows: name the "
            "columns Date, Time, Platform, Language, Brief (or Date, Heure, Plateforme, Langue, Sujet)"
        )
    source.header_row, header = rows[header_at][0], list(rows[header_at][1])
    above = rows[header_at - 1][1] if header_at > 0 else []
    for i, cell in enumerate(header):  # a group header merged over this one, exported to CSV
        if _empty(cell) and i < len(above) and not _empty(above[i]) and _field_of(above[i]):
            header[i] = above[i]
    source.headers = ["" if _empty(h) else str(h).strip() for h in header]
    ranks: dict[str, int] = {}
    for index, name in enumerate(header):
        found = _field_of(name)
        if found is None:
            if not _empty(name):
                source.ignored.append(str(name).strip())
            continue
        field_name, rank = found
        if field_name in source.columns and ranks[field_name] <= rank:
            source.ignored.append(
                f"{str(name).strip()} (column {source.headers[source.columns[field_name]]} is the {field_name})"
            )
            continue
        if field_name in source.columns:
            source.ignored.append(
                f"{source.headers[source.columns[field_name]]} (column {str(name).strip()} is the {field_name})"
            )
        source.columns[field_name], ranks[field_name] = index, rank
    missing = [f for f in REQUIRED if f not in source.columns]
    if "date" not in source.columns and "every" not in source.columns:
        missing.insert(0, "date")
    if missing:
        wanted = "; ".join(f"{f}: {', '.join(a.title() for a in COLUMNS[f][:3])}" for f in missing)
        raise ConfigError(
            f"{source.path}, row {source.header_row}: no column for {', '.join(missing)} "
            f"(columns found: {', '.join(h for h in source.headers if h) or 'none'}); "
            f"name them e.g. {wanted}"
        )
    data: dict[str, list] = {"posts": [], "recurring": []}
    derived: dict[str, int] = {}
    for number, cells in rows[header_at + 1 :]:
        if all(_empty(c) for c in cells):
            continue  # blank and trailing rows
        row = _row_entry(number, cells, source)
        platforms = row["platform"] if isinstance(row["platform"], list) else [row["platform"]]
        for platform in platforms:  # Notion's and Airtable's multi-select: one post per platform
            entry = {**row, "platform": platform}
            if len(platforms) > 1 and "id" in entry:
                entry["id"] = f"{entry['id']}-{_slug(platform)}"
            section = "recurring" if "every" in entry else "posts"
            if "id" not in entry:
                base = _derived_id(entry)
                derived[base] = derived.get(base, 0) + 1
                entry["id"] = base if derived[base] == 1 else f"{base}-{derived[base]}"
            source.rows[(section, len(data[section]))] = number
            data[section].append(entry)
    return data


def _row_entry(number: int, cells: list[Any], source: SheetSource) -> dict:
    def cell(field_name: str) -> Any:
        index = source.columns.get(field_name)
        if index is None or index >= len(cells) or _empty(cells[index]):
            return None
        value = cells[index]
        return value.strip() if isinstance(value, str) else value

    entry: dict[str, Any] = {}
    for field_name, convert in CONVERTERS.items():
        value = cell(field_name)
        if value is None:
            continue
        try:
            converted = convert(value)
        except CellError as exc:
            raise ConfigError(f"{source.where(number, field_name)}: {exc}") from None
        if field_name == "date" and isinstance(converted, tuple):
            converted, at = converted
            if at is not None and cell("time") is None:
                entry["time"] = at
        entry[field_name] = converted
    if "every" in entry:
        if "date" in entry:  # a weekly row's date is when it starts, unless Starts says so
            entry.setdefault("starts", entry.pop("date"))
    elif "date" not in entry:
        raise ConfigError(
            f"{source.where(number, 'date' if 'date' in source.columns else None)}: no date: give the "
            f"post's date ({DATE_EXAMPLE})"
            + (
                f", or weekdays under '{source.headers[source.columns['every']]}' for a weekly post"
                if "every" in source.columns
                else ""
            )
        )
    for required in REQUIRED:
        if required not in entry:
            raise ConfigError(f"{source.where(number, required)}: empty: every post needs its {required}")
    return entry


def _derived_id(entry: dict) -> str:
    """A stable id for a row without one: its date (or weekdays), platform and language. The ledger
    keys every draft by it, so it must not change when the brief is reworded."""
    when = (
        entry["date"].isoformat()
        if "date" in entry
        else "-".join([entry["every"]] if isinstance(entry["every"], str) else entry["every"])
    )
    return _slug(f"{when}-{entry['platform']}-{entry['language']}")


def _slug(text: str) -> str:
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9]+", "-", normalise(text))).strip("-")[:60].strip("-")


# ------------------------------------------------------------------ cell converters
def parse_date(value: Any) -> tuple[dt.date, str | None]:
    """A date cell, with the time when the cell holds one (Notion, ISO date-times)."""
    if isinstance(value, dt.datetime):
        return value.date(), (value.strftime("%H:%M") if value.time() != dt.time() else None)
    if isinstance(value, dt.date):
        return value, None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _serial_date(value), None
    text = str(value).strip()
    if "→" in text:  # a Notion range: the post is on its start
        text = text.split("→")[0].strip()
    if re.fullmatch(r"\d{5}(\.\d+)?", text):
        return _serial_date(float(text)), None
    text_time = None
    match = re.match(
        r"^(.*?\d)(?:[ T]+(\d{1,2}(?:[:h]\d{2}(?::\d{2})?|h)\s*(?:[ap]\.?m\.?)?|\d{1,2}\s*[ap]\.?m\.?))$",
        text,
        re.IGNORECASE,
    )
    if match and re.search(r"\d{4}", match.group(1)):
        text, text_time = match.group(1).strip(), parse_time(match.group(2))
    iso = re.fullmatch(r"(\d{4})-(\d{1,2})-(\d{1,2})", text)
    if iso:
        return _make_date(int(iso.group(1)), int(iso.group(2)), int(iso.group(3)), value), text_time
    numeric = re.fullmatch(r"(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{2}|\d{4})", text)
    if numeric:
        day, month, year = (int(g) for g in numeric.groups())
        year += 2000 if year < 100 else 0
        if month > 12 and day <= 12:
            raise CellError(
                f"{value!r} reads as month/day (US order); write the day first ({DATE_EXAMPLE}) or "
                "export with a European locale"
            )
        return _make_date(year, month, day, value), text_time
    words = normalise(text).replace(",", " ").split()
    words = [w for w in words if not (w in WEEKDAY_NAMES and w not in MONTHS) and w not in ("le", "the", "of", "de")]
    numbers = [w for w in words if w.isdigit()]
    months = [MONTHS[w.rstrip(".")] for w in words if w.rstrip(".") in MONTHS]
    if len(months) == 1 and len(numbers) == 2 and len(words) == 3:
        day, year = (int(numbers[0]), int(numbers[1])) if int(numbers[1]) > 31 else (int(numbers[1]), int(numbers[0]))
        return _make_date(year, months[0], day, value), text_time
    raise CellError(f"{value!r} is not a date: write {DATE_EXAMPLE} (day first), or format the cell as a date")


def _serial_date(number: float) -> dt.date:
    from openpyxl.utils.datetime import from_excel  # type: ignore[import-untyped]

    if not SERIAL_RANGE[0] <= number <= SERIAL_RANGE[1]:
        raise CellError(f"{number!r} is not a date: write {DATE_EXAMPLE}, or format the cell as a date")
    return from_excel(number).date()


def _make_date(year: int, month: int, day: int, value: Any) -> dt.date:
    try:
        return dt.date(year, month, day)
    except ValueError as exc:
        raise CellError(f"{value!r} is not a real date ({exc}): write {DATE_EXAMPLE}") from None


def parse_time(value: Any) -> str:
    """'9h', '09:00', '9:00 AM', an Excel time cell or a fraction of a day -> 'HH:MM'."""
    if isinstance(value, dt.datetime):
        value = value.time()
    if isinstance(value, dt.time):
        return value.strftime("%H:%M")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if 0 <= value < 1:  # Excel stores a time as a fraction of a day
            minutes = round(value * 24 * 60)
            return f"{minutes // 60:02d}:{minutes % 60:02d}"
        if float(value).is_integer() and 0 <= value <= 23:
            return f"{int(value):02d}:00"
        raise CellError(f"{value!r} is not a time: write 09:00 or 9h30 (24-hour clock)")
    text = str(value).strip().lower().replace(".", "")
    match = re.fullmatch(r"(\d{1,2})\s*(?:[:h]\s*(\d{2})?)?(?::\d{2})?\s*(am|pm)?", text)
    if match and (match.group(2) or match.group(3) or "h" in text or ":" in text):
        hour, minute = int(match.group(1)), int(match.group(2) or 0)
        if match.group(3):
            if not 1 <= hour <= 12:
                raise CellError(f"{value!r} is not a time: {hour} {match.group(3).upper()} does not exist")
            hour = hour % 12 + (12 if match.group(3) == "pm" else 0)
        if hour <= 23 and minute <= 59:
            return f"{hour:02d}:{minute:02d}"
    raise CellError(f"{value!r} is not a time: write 09:00 or 9h30 (24-hour clock)")


def parse_strength(value: Any) -> float:
    """0.6, '0,6' (a decimal comma) or '60 %'."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip().replace(" ", "").replace("\u00a0", "").replace(",", ".")
    try:
        return float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise CellError(f"{value!r} is not a number: write a strength between 0 and 1, e.g. 0,6 or 0.6") from None


def parse_weekdays(value: Any) -> str | list[str]:
    """'friday', 'Lundi, Vendredi', 'tous les vendredis', 'Mon & Thu' -> weekday names."""
    days = []
    for part in re.split(r"[,;/&+\n]|\s+et\s+|\s+and\s+", str(value)):
        words = [w for w in normalise(part).split() if w not in ("every", "each", "tous", "les", "chaque", "le")]
        if not words:
            continue
        name = " ".join(words)
        if name not in WEEKDAY_NAMES and name.endswith("s") and name[:-1] in WEEKDAY_NAMES:
            name = name[:-1]  # "vendredis", "mondays"
        if name not in WEEKDAY_NAMES:
            raise CellError(f"{part.strip()!r} is not a weekday: write e.g. friday, or lundi, vendredi")
        days.append(WEEKDAY_NAMES[name])
    if not days:
        raise CellError("no weekday: write e.g. friday, or lundi, vendredi")
    return days[0] if len(days) == 1 else days


def parse_dates(value: Any) -> list[dt.date]:
    if isinstance(value, (dt.date, dt.datetime, int, float)):
        return [parse_date(value)[0]]
    return [parse_date(part.strip())[0] for part in re.split(r"[;\n|]|,(?=\s*\d)", str(value)) if part.strip()]


def parse_facts(value: Any) -> list[str]:
    """One fact per line, or separated by ';' or '|' (never ',': '2,50 €' is one fact)."""
    return [part.strip() for part in re.split(r"[\n;|•]", str(value)) if part.strip()]


def parse_platform(value: Any) -> str | list[str]:
    """'Instagram' -> 'instagram', 'Twitter' -> 'x'; 'Instagram, LinkedIn' (a multi-select) -> both."""
    names = []
    for part in re.split(r"[,;\n|+]", str(value)):
        name = " ".join(part.strip().lower().split())
        if name:
            names.append(PLATFORM_NAMES.get(name, name))
    if len(names) == 1:
        return names[0]
    if not names:
        raise CellError("no platform: write e.g. instagram")
    if len(set(names)) != len(names):
        raise CellError(f"{value!r} names a platform twice")
    return names


def parse_language(value: Any) -> str:
    name = normalise(value)
    if name in LANGUAGE_NAMES:
        return LANGUAGE_NAMES[name]
    return re.split(r"[-_ ]", name)[0] if re.fullmatch(r"[a-z]{2,3}([-_ ][a-z]{2,4})?", name) else name


def parse_reference(value: Any) -> str:
    text = str(value).strip()
    match = re.fullmatch(r"(.+?)\s*\((https?://[^)]*)\)", text)  # Airtable attachment: "name (url)"
    return match.group(1).strip() if match else text


def parse_id(value: Any) -> str:
    text = str(value).strip()
    return text if re.fullmatch(r"[a-z0-9][a-z0-9-]*", text) else (_slug(text) or text)


def _text(value: Any) -> str:
    return str(value).strip()


CONVERTERS = {
    "id": parse_id,
    "date": parse_date,
    "time": parse_time,
    "platform": parse_platform,
    "language": parse_language,
    "audience": _text,
    "brief": _text,
    "facts": parse_facts,
    "reference_image": parse_reference,
    "strength": parse_strength,
    "every": parse_weekdays,
    "starts": lambda v: parse_date(v)[0],
    "ends": lambda v: parse_date(v)[0],
    "skip": parse_dates,
}


# ------------------------------------------------------------------ `estampille calendar check`
