"""The report files (CSV, CSVW metadata, XLSX) and the web downloads of the pages, each logged."""

from __future__ import annotations

import csv
import io
import json
import warnings

import pytest
import time_machine
from django.core.cache import cache
from django.urls import reverse
from django.utils import translation
from openpyxl import load_workbook

from fablab.reports import exports
from fablab.reports.cells import COLUMNS, Cell
from fablab.reports.disclosure import SUPPRESSION_NOTES
from fablab.reports.metrics import TABLES
from fablab.reports.models import ExportLog
from tests.reports.outputs_world import NOW, make_world

CELLS = [
    Cell("2025-Q1", "a-one", metric="used_hours", value=12.0, unit="h"),
    Cell("2025-Q1", "a-one", metric="usage_utilisation", value=41.7, unit="%", obs_status="p"),
    Cell(
        "2025-Q1",
        "a-one",
        dimension="gender",
        category="woman",
        metric="makers",
        value=4.0,
        unit="count",
        obs_status="c",
        people=4,
    ),
    Cell(
        "2025-Q1",
        "a-one",
        dimension="gender",
        category="",
        metric="makers",
        value=12.0,
        unit="count",
        people=12,
    ),
    Cell("2025-Q1", metric="booking_realisation", value=None, unit="%"),
]


def parse(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def test_the_csv_is_tidy_long_with_the_ten_columns():
    text = exports.csv_text(CELLS)
    assert text.startswith(
        "period,lab,machine_type,machine,dimension,category,metric,value,unit,obs_status\r\n"
    )
    assert not text.startswith("\ufeff")
    rows = parse(text)
    assert len(rows) == len(CELLS)
    assert rows[0] == {
        "period": "2025-Q1",
        "lab": "a-one",
        "machine_type": "",
        "machine": "",
        "dimension": "",
        "category": "",
        "metric": "used_hours",
        "value": "12",
        "unit": "h",
        "obs_status": "",
    }
    assert rows[1]["value"] == "41.7" and rows[1]["obs_status"] == "p"
    # Suppressed: no value, whatever the cell holds internally; flag c.
    assert rows[2]["value"] == "" and rows[2]["obs_status"] == "c"
    assert rows[4]["value"] == ""
    assert "4" not in [row["value"] for row in rows]
    assert exports.csv_bytes(CELLS) == text.encode("utf-8")


def test_the_csvw_metadata_describes_every_column_in_order():
    metadata = exports.csvw_metadata("https://example.org/r.csv", title="A report", license_url="https://x/")
    assert metadata["@context"][0] == "http://www.w3.org/ns/csvw"
    assert metadata["url"] == "https://example.org/r.csv"
    columns = metadata["tableSchema"]["columns"]
    assert [c["name"] for c in columns] == list(COLUMNS)
    assert [c["titles"] for c in columns] == list(COLUMNS)
    assert all(c["datatype"] and c["dc:description"] for c in columns)
    assert set(metadata["tableSchema"]["primaryKey"]) <= set(COLUMNS)
    assert "value" not in metadata["tableSchema"]["primaryKey"]
    assert metadata["dialect"]["header"] is True
    json.dumps(metadata)  # plain JSON, translations resolved


def test_the_primary_key_identifies_each_row():
    rows = parse(exports.csv_text(CELLS))
    key = exports.csvw_metadata("r.csv", title="t")["tableSchema"]["primaryKey"]
    assert len({tuple(row[k] for k in key) for row in rows}) == len(rows)


def test_the_workbook_has_a_sheet_per_table_definitions_and_suppression_notes():
    book = load_workbook(io.BytesIO(exports.xlsx_bytes(CELLS, title="Report")))
    assert book.sheetnames[-2:] == ["Definitions", "Suppression notes"]
    tables = book.sheetnames[:-2]
    assert len(tables) >= 2  # the machine figures and the gender table are two tables
    rows = [row for name in tables for row in book[name].iter_rows(min_row=2, values_only=True)]
    assert len(rows) == len(CELLS)
    for name in book.sheetnames:
        sheet = book[name]
        assert sheet.freeze_panes == "A2"
        assert all(cell.font.bold for cell in sheet[1])
    for name in tables:
        assert tuple(c.value for c in book[name][1]) == COLUMNS
    suppressed = [row for row in rows if row[COLUMNS.index("obs_status")] == "c"]
    assert suppressed and all(row[COLUMNS.index("value")] is None for row in suppressed)
    assert 12 in [row[COLUMNS.index("value")] for row in rows]  # numbers stay numbers
    definitions = list(book["Definitions"].iter_rows(min_row=2, values_only=True))
    assert definitions[[d[0] for d in definitions].index("used_hours")][:3] == ("used_hours", "M4", "h")
    notes = list(book["Suppression notes"].iter_rows(min_row=2, values_only=True))
    assert len(notes) == len(SUPPRESSION_NOTES)


def test_the_suppression_notes_count_each_hidden_cell_under_the_rule_that_hid_it():
    hidden = [
        Cell("2025-Q1", "a-one", dimension="initiative", category=slug, metric="participants",
             value=float(n), unit="count", obs_status="c", people=n, withheld_by=rule)
        for slug, n, rule in (("a", 4, "threshold"), ("b", 12, "pattern"), ("c", 15, "secondary"))
    ]  # fmt: skip
    book = load_workbook(io.BytesIO(exports.xlsx_bytes(hidden)))
    counts = {row[0]: row[2] for row in book["Suppression notes"].iter_rows(min_row=2, values_only=True)}
    # Hidden in every period because of another one: the pattern rule, not a secondary suppression.
    assert (counts["threshold"], counts["pattern"], counts["secondary"]) == (1, 1, 1)
    rules = sum(n for rule, n in counts.items() if rule not in ("c", "p", "band"))
    assert rules == counts["c"] == 3


def test_the_sheets_are_named_by_the_tables_titles_in_the_readers_language():
    with translation.override("fr"):
        book = load_workbook(io.BytesIO(exports.xlsx_bytes(CELLS)))
    assert book.sheetnames == ["Machines", "Genre", "Définitions", "Notes de masquage"]


@pytest.mark.parametrize("language", ["en", "fr", "nl"])
def test_every_tables_title_is_a_sheet_title_excel_takes_as_it_is(language):
    with translation.override(language):
        titles = [str(exports.TABLE_TITLES[table]) for table in TABLES]
    assert [exports._sheet_title(title, []) for title in titles] == titles  # short, no []:*?/\
    assert len({title.casefold() for title in titles}) == len(TABLES)


def test_a_sheet_title_is_cut_to_31_characters_without_forbidden_ones_and_unique_whatever_its_case():
    name = "Heures/membre [T1]: machines et ateliers"
    first = exports._sheet_title(name, [])
    assert first == "Heures_membre _T1__ machines et"
    second = exports._sheet_title(name, ["Genre", first])
    assert second == "Heures_membre _T1__ machine (2)"
    assert exports._sheet_title("GENRE", ["Genre"]) == "GENRE (2)"


# --------------------------------------------------------------------------------------- web downloads


@pytest.fixture
def world(db):
    cache.clear()
    with time_machine.travel(NOW, tick=False):
        yield make_world()


def url(fmt: str) -> str:
    return reverse("reports:export", args=[fmt])


@pytest.mark.parametrize("fmt", ["csv", "csv-metadata", "xlsx"])
def test_an_officer_downloads_each_format_and_it_is_logged(client, world, fmt):
    client.force_login(world["officer_a"])
    response = client.get(url(fmt), {"period": "2025-Q1", "level": "lab", "lab": "a-one"})
    assert response.status_code == 200
    assert "attachment" in response["Content-Disposition"]
    log = ExportLog.objects.get()
    assert (log.user, log.period, log.level, log.lab, log.via) == (
        world["officer_a"],
        "2025-Q1",
        "lab",
        "a-one",
        "web",
    )
    assert log.fmt == {"csv-metadata": "csvw"}.get(fmt, fmt)
    assert log.rows > 0
    if fmt == "csv":
        rows = parse(response.content.decode("utf-8"))
        assert rows and {row["lab"] for row in rows} == {"a-one"}
        assert 'rel="describedby"' in response["Link"] and "csv-metadata" in response["Link"]
    elif fmt == "csv-metadata":
        metadata = json.loads(response.content)
        assert "/reports/export/csv/?" in metadata["url"] and "lab=a-one" in metadata["url"]
        assert [c["name"] for c in metadata["tableSchema"]["columns"]] == list(COLUMNS)
    else:
        assert response["Content-Type"] == exports.XLSX_TYPE
        assert "Definitions" in load_workbook(io.BytesIO(response.content)).sheetnames


def test_the_csv_header_matches_its_csvw_metadata(client, world):
    client.force_login(world["officer_a"])
    query = {"period": "2025", "level": "network"}
    header = client.get(url("csv"), query).content.decode().splitlines()[0].split(",")
    metadata = json.loads(client.get(url("csv-metadata"), query).content)
    assert header == [c["titles"] for c in metadata["tableSchema"]["columns"]]


def test_web_downloads_follow_the_same_access_rules(client, world):
    query = {"period": "2025", "level": "lab", "lab": "b-one"}
    response = client.get(url("csv"), query)
    assert response.status_code == 302 and reverse("members:login") in response["Location"]
    client.force_login(world["member"])
    assert client.get(url("csv"), query | {"lab": "a-one"}).status_code == 403
    client.force_login(world["officer_a"])
    assert client.get(url("csv"), query).status_code == 404
    assert client.get(url("csv"), query | {"lab": "nothing"}).status_code == 404
    assert client.get(url("csv"), query | {"period": "2025-01-01/2025-02-01"}).status_code == 400
    assert client.get(url("csv"), query | {"level": "room"}).status_code == 400
    assert client.get(url("pdf"), query | {"lab": "a-one"}).status_code == 404
    client.force_login(world["manager"])
    assert client.get(url("xlsx"), query | {"lab": "a-one"}).status_code == 404
    assert not ExportLog.objects.exists()
    rows = parse(client.get(url("csv"), {"period": "2025", "level": "machine"}).content.decode())
    assert rows and {row["lab"] for row in rows} == {"a-two"}
    assert ExportLog.objects.get().user == world["manager"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "address",
    [
        url("csv") + "?period=2025-Q1&level=lab&lab=a-one",
        reverse("opendata:csv"),
    ],
)
def test_a_csv_is_served_whole_under_asgi_without_a_streaming_warning(async_client, world, address):
    """The site runs under ASGI: a CSV streamed from a synchronous iterator would make Django warn on
    every download. The files are small (one year of one scope), so they are answered whole."""
    from concurrent.futures import ThreadPoolExecutor

    from asgiref.sync import async_to_sync

    async_client.force_login(world["officer_a"])
    with warnings.catch_warnings(record=True) as caught, ThreadPoolExecutor(1) as thread:
        warnings.simplefilter("always")
        # A thread of its own, with an event loop of its own: this test must not depend on what an
        # earlier test left in the main thread (async_to_sync refuses to run beside a running loop).
        response = thread.submit(async_to_sync(async_client.get), address).result()
    assert response.status_code == 200 and not response.streaming
    assert not [w for w in caught if "StreamingHttpResponse" in str(w.message)]
    rows = parse(response.content.decode("utf-8"))
    assert rows and int(response["Content-Length"]) == len(response.content)
