"""The report files: tidy CSV, its W3C CSVW metadata, and an XLSX workbook; and the export log.

Every function takes cells that already went through the disclosure control (``service.report`` or
``service.open_data_cells``) and writes only their public columns (:meth:`Cell.public`): a suppressed
cell has an empty value and the flag ``c``, whatever the format.

Decisions:

* **CSV**: UTF-8 *without* a byte order mark, comma-separated, ``.`` as the decimal mark, CRLF line
  ends (RFC 4180). Every text in the file is a slug or a code (ASCII), so a BOM would help no
  spreadsheet and would break tools that read the first column name (``\\ufeffperiod``); the XLSX is
  the download meant for spreadsheets.
* **Suppressed values** are an empty value with ``obs_status`` ``c`` in every format, the XLSX too
  (not a text "<10" in a numeric column): columns stay numeric, and a cell hidden by secondary
  suppression or by dominance is not "fewer than 10" at all. The pages show "<10" for those that are,
  "•" for the others.
* **Numbers** are written as they come from the metrics (already rounded); whole numbers without a
  decimal part.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping

from django.utils import translation
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from .cells import COLUMNS, PROVISIONAL, SUPPRESSED, Cell
from .definitions import DIMENSIONS, METRICS
from .models import ExportLog

CSV_TYPE = "text/csv; charset=utf-8"
CSVW_TYPE = "application/csvm+json"
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

#: The columns that identify a row (the CSVW primary key).
KEY_COLUMNS = [c for c in COLUMNS if c not in ("value", "unit", "obs_status")]

#: What each column holds, for the CSVW metadata: (datatype, required, description).
COLUMN_SCHEMA: dict[str, tuple[object, bool, object]] = {
    "period": (
        {"base": "string", "format": r"^\d{4}(-Q[1-4]|-(0[1-9]|1[0-2]))?$"},
        True,
        _(
            "Calendar period: a year (2026), a quarter (2026-Q3) or a month (2026-07), in each lab's time zone."
        ),
    ),
    "lab": ("string", False, _("Lab slug; empty for the whole network of the report.")),
    "machine_type": ("string", False, _("Machine type slug, within the lab; empty above the type level.")),
    "machine": ("string", False, _("Machine slug, within the lab; empty above the machine level.")),
    "dimension": (
        "string",
        False,
        _(
            "The one breakdown of the table (gender, age_band, user_category, initiative, training, weekday_hour); empty for a total."
        ),
    ),
    "category": (
        "string",
        False,
        _("The category of the breakdown; empty for a total or for members who did not declare it."),
    ),
    "metric": ("string", True, _("The figure, as defined in the Definitions of the report.")),
    "value": (
        "decimal",
        False,
        _("The value; empty when suppressed (obs_status c) or when its denominator is zero."),
    ),
    "unit": (
        "string",
        True,
        _("Unit: h, %, % band (lower bound of a 25-point band), count, kWh, kWh/h, flag."),
    ),
    "obs_status": (
        {"base": "string", "format": "^[cpe]*$"},
        False,
        _("Flags: c suppressed by the disclosure rules, p provisional (running period), e estimated."),
    ),
}


def plain_value(value: float | None) -> float | int | None:
    """Whole numbers as integers (``12``, not ``12.0``); ``None`` stays empty."""
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# --------------------------------------------------------------------------------------- CSV


def csv_text(cells: Iterable[Cell]) -> str:
    """The tidy long CSV: a header of the ten public columns, one row per cell."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for cell in cells:
        row = cell.public()
        row["value"] = plain_value(row["value"])
        writer.writerow(["" if row[name] is None else row[name] for name in COLUMNS])
    return out.getvalue()


def csv_bytes(cells: Iterable[Cell]) -> bytes:
    return csv_text(cells).encode("utf-8")


def csvw_metadata(csv_url: str, *, title: str, description: str = "", license_url: str = "") -> dict:
    """The W3C CSVW metadata of a tidy CSV at ``csv_url`` (an absolute URL, or relative to the metadata).

    Texts are in the active language, tagged with it. Column names are the CSV header, in order; the
    primary key is every column that identifies a row.
    """
    language = translation.get_language() or "en"
    columns = []
    for name in COLUMNS:
        datatype, required, text = COLUMN_SCHEMA[name]
        columns.append(
            {
                "name": name,
                "titles": name,
                "datatype": datatype,
                "required": required,
                "dc:description": str(text),
            }
        )
    metadata = {
        "@context": ["http://www.w3.org/ns/csvw", {"@language": language}],
        "url": csv_url,
        "dc:title": title,
        "dialect": {"encoding": "utf-8", "header": True, "delimiter": ","},
        "tableSchema": {"columns": columns, "primaryKey": KEY_COLUMNS},
    }
    if description:
        metadata["dc:description"] = description
    if license_url:
        metadata["dc:license"] = {"@id": license_url}
    return metadata


# --------------------------------------------------------------------------------------- XLSX


#: Each table's sheet title (:data:`.metrics.TABLES`), in the reader's language: the heading of its section
#: on the report pages, so that the page's table is found under the same name; the heatmap's heading names
#: a period, so its sheet takes its breakdown's label.
TABLE_TITLES = {
    "machines": _("Machines"),
    "heatmap": DIMENSIONS["weekday_hour"]["label"],
    "people": _("Makers"),
    "trainings": _("Trainings"),
    "user_category": _("User categories"),
    "gender": _("Gender"),
    "age_band": _("Age band"),
    "initiatives": _("Initiative reach"),
}


def _table_of(cell: Cell) -> str:
    from .metrics import table_of

    return table_of(cell)


def _notes_rows(notes) -> list[tuple[str, str]]:
    if isinstance(notes, Mapping):
        return [(str(key), str(text)) for key, text in notes.items()]
    rows = []
    for note in notes:
        if isinstance(note, tuple | list):
            rows.append((str(note[0]), " ".join(str(part) for part in note[1:])))
        else:
            rows.append(("", str(note)))
    return rows


def xlsx_bytes(cells: Iterable[Cell], *, title: str = "") -> bytes:
    """A workbook: one sheet per table (``metrics.table_of``), then "Definitions" and "Suppression notes".

    Header rows bold and frozen; sheet titles (:data:`TABLE_TITLES`), definitions and notes in the active
    language.
    """
    from openpyxl import Workbook
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    from .disclosure import SUPPRESSION_NOTES, summary

    bold = Font(bold=True)
    book = Workbook()
    book.remove(book.active)

    def sheet(name: str, header: list[str], widths: list[int]):
        ws = book.create_sheet(_sheet_title(name, book.sheetnames))
        ws.append(header)
        for column in ws[1]:
            column.font = bold
        ws.freeze_panes = "A2"
        for index, width in enumerate(widths, start=1):
            ws.column_dimensions[get_column_letter(index)].width = width
        return ws

    cells = list(cells)
    tables: dict[str, list[Cell]] = {}
    for cell in cells:
        tables.setdefault(_table_of(cell), []).append(cell)
    widths = [10, 16, 16, 16, 14, 14, 28, 10, 8, 10]
    for name, table in tables.items():
        ws = sheet(str(TABLE_TITLES.get(name, name)), list(COLUMNS), widths)
        for cell in table:
            row = cell.public()
            row["value"] = plain_value(row["value"])
            ws.append([row[column] for column in COLUMNS])
        ws.auto_filter.ref = ws.dimensions

    ws = sheet(
        gettext("Definitions"),
        [gettext("metric"), gettext("ref"), gettext("unit"), gettext("label"), gettext("definition")],
        [28, 8, 8, 28, 100],
    )
    for metric in METRICS.values():
        ws.append([metric.name, metric.ref, metric.unit, str(metric.label), str(metric.definition)])

    # Beside each note, how many cells of this file it concerns (flags counted, rules as the control
    # recorded or recomputed them).
    counts = summary(cells)
    counts[SUPPRESSED] = sum(1 for cell in cells if cell.suppressed)
    counts[PROVISIONAL] = sum(1 for cell in cells if PROVISIONAL in cell.obs_status)
    ws = sheet(
        gettext("Suppression notes"),
        [gettext("flag or rule"), gettext("note"), gettext("cells in this file")],
        [16, 120, 16],
    )
    for key, text in _notes_rows(SUPPRESSION_NOTES):
        ws.append([key, text, counts.get(key, 0)])

    if title:
        book.properties.title = title
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _sheet_title(name: str, taken: list[str]) -> str:
    """An Excel sheet title: at most 31 characters, none of ``[]:*?/\\``, unique in the workbook.

    Excel compares sheet titles regardless of case ("Gender" and "gender" clash), and so does openpyxl,
    which would rename the second one itself, past 31 characters.
    """
    clean = "".join("_" if ch in "[]:*?/\\" else ch for ch in name)[:31] or "table"
    taken_folded = {other.casefold() for other in taken}
    title, n = clean, 2
    while title.casefold() in taken_folded:
        suffix = f" ({n})"
        title, n = clean[: 31 - len(suffix)] + suffix, n + 1
    return title


# --------------------------------------------------------------------------------------- log


def log_export(user, *, fmt: str, period: str, level: str, lab: str = "", via: str, rows: int) -> ExportLog:
    """Record one export (disclosure rule 10): who, which format, which slice, how many rows."""
    signed_in = user is not None and getattr(user, "is_authenticated", False)
    return ExportLog.objects.create(
        user=user if signed_in else None,
        fmt=fmt[:8],
        period=str(period)[:10],
        level=level[:16],
        lab=(lab or "")[:63],
        via=via[:8],
        rows=rows,
    )


def filename(period: str, level: str, lab: str = "", *, ext: str) -> str:
    """``report-2026-Q3-lab-fablab-gent.csv``: the slice in the name, nothing else."""
    parts = ["report", str(period), level] + ([lab] if lab else [])
    return "-".join(parts) + "." + ext
