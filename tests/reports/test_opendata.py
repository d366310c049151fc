"""Open data: network and lab × year only, rounded counts without 1–9, CSVW and DCAT-AP, CC BY 4.0."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json

import pytest
import time_machine
from django.core.cache import cache
from django.urls import reverse

from fablab.reports.cells import COLUMNS
from fablab.reports.models import ExportLog, MachineDay, MemberDay, Subject
from tests.factories import TrainingFactory
from tests.reports.outputs_world import NOW, YEAR, make_world

pytestmark = pytest.mark.django_db
CC_BY = "https://creativecommons.org/licenses/by/4.0/"


@pytest.fixture
def world():
    cache.clear()
    with time_machine.travel(NOW, tick=False):
        world = make_world()
        # A running year's rollups: never published until the year is over.
        MachineDay.objects.create(
            machine=world["machines"]["a-one"], day=NOW.date().replace(day=1), open_h=10
        )
        yield world


def rows_of(client) -> list[dict]:
    response = client.get(reverse("opendata:csv"))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.content.decode("utf-8"))))


def test_the_csv_has_network_and_lab_by_year_tables_only(client, world):
    rows = rows_of(client)
    assert rows
    assert {row["period"] for row in rows} == {str(YEAR)}
    assert all(not row["machine_type"] and not row["machine"] for row in rows)
    assert {row["lab"] for row in rows} == {"", "a-one", "a-two", "b-one"}
    assert not any(row["dimension"] == "weekday_hour" for row in rows)


def test_every_published_count_is_a_multiple_of_5_and_none_is_1_to_9(client, world):
    counts = [row for row in rows_of(client) if row["unit"] == "count"]
    assert counts
    shown = [float(row["value"]) for row in counts if row["value"] != ""]
    assert shown
    assert all(value % 5 == 0 for value in shown)
    assert not any(1 <= value <= 9 for value in shown)
    assert all(row["obs_status"] == "c" for row in counts if row["value"] == "")
    # b-one's 3 makers are withheld; a-two's 12 are published rounded to 10, the network's 40 as 40.
    makers = {row["lab"]: row for row in counts if row["metric"] == "active_makers"}
    assert makers["b-one"]["value"] == "" and makers["b-one"]["obs_status"] == "c"
    assert makers["a-two"]["value"] == "10"
    assert makers[""]["value"] == "40"


def test_open_data_needs_no_account_and_is_logged(client, world):
    rows_of(client)
    log = ExportLog.objects.get()
    assert (log.user, log.fmt, log.level, log.via, log.period) == (None, "csv", "open", "open", str(YEAR))
    assert log.rows > 0


def test_the_csvw_metadata_describes_the_csv(client, world):
    response = client.get(reverse("opendata:csvw"))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/csvm+json"
    metadata = json.loads(response.content)
    assert metadata["url"].endswith("/open-data/programme.csv")
    assert metadata["dc:license"] == {"@id": CC_BY}
    header = client.get(reverse("opendata:csv")).content.decode().splitlines()[0].split(",")
    assert header == list(COLUMNS) == [c["name"] for c in metadata["tableSchema"]["columns"]]
    link = client.get(reverse("opendata:csv"))["Link"]
    assert "programme.csv-metadata.json" in link and 'rel="describedby"' in link


def test_the_dcat_ap_catalogue(client, world):
    response = client.get(reverse("opendata:catalog"))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/ld+json"
    catalog = response.json()
    assert catalog["@type"] == "dcat:Catalog"
    assert {"dcat", "dct", "vcard", "foaf"} <= set(catalog["@context"])
    (dataset,) = catalog["dcat:dataset"]
    assert dataset["@type"] == "dcat:Dataset"
    for field in (
        "dct:title",
        "dct:description",
        "dct:publisher",
        "dcat:contactPoint",
        "dcat:keyword",
        "dcat:theme",
        "dct:temporal",
        "dct:spatial",
        "dcat:distribution",
    ):
        assert dataset[field], field
    assert {t["@language"] for t in dataset["dct:description"]} == {"en", "nl", "fr"}
    assert len({t["@value"] for t in dataset["dct:title"]}) >= 1
    assert dataset["dcat:contactPoint"]["vcard:hasEmail"]["@id"].startswith("mailto:")
    assert all(
        t["@id"].startswith("http://publications.europa.eu/resource/authority/data-theme/")
        for t in dataset["dcat:theme"]
    )
    assert dataset["dct:temporal"]["dcat:startDate"]["@value"] == f"{YEAR}-01-01"
    assert dataset["dct:temporal"]["dcat:endDate"]["@value"] == f"{YEAR}-12-31"
    csv_distribution = dataset["dcat:distribution"][0]
    assert csv_distribution["dcat:downloadURL"]["@id"].endswith("/open-data/programme.csv")
    assert csv_distribution["dcat:mediaType"]["@id"].endswith("text/csv")
    assert csv_distribution["dct:license"]["@id"] == CC_BY


def test_the_catalogue_contact_comes_from_the_settings(client, world, settings):
    settings.FABLAB_OPEN_DATA_CONTACT = {"name": "Open data desk", "email": "data@example.org"}
    settings.FABLAB_OPEN_DATA_SPATIAL = "http://publications.europa.eu/resource/authority/atu/BEL_REG_BRU"
    (dataset,) = client.get(reverse("opendata:catalog")).json()["dcat:dataset"]
    assert dataset["dcat:contactPoint"]["vcard:fn"] == "Open data desk"
    assert dataset["dcat:contactPoint"]["vcard:hasEmail"]["@id"] == "mailto:data@example.org"
    assert dataset["dct:spatial"]["@id"].endswith("BEL_REG_BRU")


@pytest.mark.parametrize("language", ["en", "nl", "fr"])
def test_the_page_is_anonymous_and_links_licence_data_and_catalogue(client, world, language):
    response = client.get(reverse("opendata:page"), HTTP_ACCEPT_LANGUAGE=language)
    assert response.status_code == 200
    html = response.content.decode()
    assert f'<html lang="{language}">' in html
    assert CC_BY in html
    assert f'rel="alternate" type="application/ld+json" href="{reverse("opendata:catalog")}"' in html
    assert reverse("opendata:csv") in html and reverse("opendata:csvw") in html
    assert f'id="year-{YEAR}"' in html and 'id="year-2026"' not in html
    for name in ("A One", "A Two", "B One"):
        assert name in html
    assert not ExportLog.objects.exists()


def test_the_page_speaks_the_readers_language_and_names_the_categories(client, world):
    training = TrainingFactory(slug="laser-safety", name="Laser safety")
    MemberDay.objects.bulk_create(
        MemberDay(
            subject=Subject.objects.create(),
            lab=world["labs"]["a-one"],
            day=dt.date(YEAR, 3, 2),
            kind=MemberDay.Kind.TRAINING,
            training=training,
            certified=True,
        )
        for _n in range(10)
    )
    html = client.get(reverse("opendata:page"), HTTP_ACCEPT_LANGUAGE="nl").content.decode()
    # A's labs are open 10 h and B's 1000 h on twelve days: 12,240 h, grouped the Dutch way.
    assert "12.240\xa0h" in html and "12240" not in html
    assert "Laser safety" in html and "<td>laser-safety</td>" not in html
    # The median hours per maker are published per lab only: the network's cell says so.
    median = html[html.index("Mediaan aantal uren per maker") :]
    network_cell = median[median.index("<td>") : median.index("</td>")]
    assert "–" in network_cell and 'href="#note-lab-only"' in network_cell
    assert 'id="note-lab-only"' in html
