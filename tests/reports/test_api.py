"""GET /api/v1/reports/: token or session, the viewer's labs only, coded 400s, files, every call logged."""

from __future__ import annotations

import csv
import io

import pytest
import time_machine
from django.core.cache import cache
from drf_spectacular.generators import SchemaGenerator
from openpyxl import load_workbook
from rest_framework.test import APIClient

from fablab.reports.cells import COLUMNS
from fablab.reports.exports import XLSX_TYPE
from fablab.reports.models import ExportLog
from tests.reports.outputs_world import NOW, OPEN_H, make_world, token_for

pytestmark = pytest.mark.django_db
URL = "/api/v1/reports/"


@pytest.fixture
def world():
    cache.clear()
    with time_machine.travel(NOW, tick=False):
        yield make_world()


def client_for(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token_for(user)}")
    return client


def assert_error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    assert response.json()["code"] == code
    assert response.json()["detail"]


def network_value(body: dict, metric: str) -> float:
    (row,) = [r for r in body["rows"] if r["metric"] == metric and not r["dimension"]]
    return row["value"]


def test_an_officers_token_reads_the_network_of_their_programme_only(world):
    response = client_for(world["officer_a"]).get(URL, {"period": "2025", "level": "network"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["period"] == "2025" and body["level"] == "network" and body["lab"] is None
    assert body["labs"] == ["a-one", "a-two"]
    assert network_value(body, "net_available_hours") == 12 * (OPEN_H["a-one"] + OPEN_H["a-two"])
    assert all(set(row) == set(COLUMNS) for row in body["rows"])
    assert all(row["lab"] == "" and row["period"] == "2025" for row in body["rows"])

    lab_rows = client_for(world["officer_a"]).get(URL, {"period": "2025-Q1", "level": "lab"}).json()["rows"]
    assert {row["lab"] for row in lab_rows} == {"a-one", "a-two"}


@pytest.mark.parametrize("level", ["lab", "machine_type", "machine"])
def test_another_programmes_lab_is_a_404_for_a_token_and_a_session(world, level):
    query = {"period": "2025", "level": level, "lab": "b-one"}
    assert_error(client_for(world["officer_a"]).get(URL, query), 404, "report_lab_not_found")
    session = APIClient()
    session.force_login(world["officer_a"])
    assert_error(session.get(URL, query), 404, "report_lab_not_found")
    assert_error(session.get(URL, query | {"lab": "nothing-here"}), 404, "report_lab_not_found")
    assert session.get(URL, query | {"lab": "a-one"}).status_code == 200


def test_a_managers_token_reads_their_lab_only(world):
    api = client_for(world["manager"])
    rows = api.get(URL, {"period": "2025", "level": "machine"}).json()["rows"]
    assert rows and {row["lab"] for row in rows} == {"a-two"}
    assert_error(
        api.get(URL, {"period": "2025", "level": "lab", "lab": "a-one"}), 404, "report_lab_not_found"
    )


def test_without_credentials_401_and_without_a_role_403(world):
    assert_error(APIClient().get(URL, {"period": "2025"}), 401, "not_authenticated")
    assert_error(client_for(world["member"]).get(URL, {"period": "2025"}), 403, "permission_denied")
    broken = APIClient()
    broken.credentials(HTTP_AUTHORIZATION="Token nonsense")
    assert_error(broken.get(URL, {"period": "2025"}), 401, "authentication_failed")
    assert not ExportLog.objects.exists()


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({}, "report_period_invalid"),
        ({"period": "2025-01-01..2025-03-31"}, "report_period_invalid"),
        ({"period": "2025-01-01"}, "report_period_invalid"),
        ({"period": "2025-Q0"}, "report_period_invalid"),
        ({"period": "2031"}, "report_period_invalid"),
        ({"period": "2025", "level": "room"}, "report_level_invalid"),
        ({"period": "2025", "format": "pdf"}, "invalid"),
        ({"period": "2025", "format": "api"}, "invalid"),
    ],
)
def test_off_the_grid_unknown_levels_and_formats_are_coded_400s(world, query, code):
    assert_error(client_for(world["officer_a"]).get(URL, query), 400, code)
    assert not ExportLog.objects.exists()


def test_csv_and_xlsx_files(world):
    api = client_for(world["officer_a"])
    response = api.get(URL, {"period": "2025-Q1", "level": "lab", "lab": "a-one", "format": "csv"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert 'filename="report-2025-Q1-lab-a-one.csv"' in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8"))))
    assert tuple(rows[0]) == COLUMNS
    assert len(rows) > 1 and all(row[0] == "2025-Q1" and row[1] == "a-one" for row in rows[1:])

    response = api.get(URL, {"period": "2025", "level": "network", "format": "xlsx"})
    assert response.status_code == 200
    assert response["Content-Type"] == XLSX_TYPE
    book = load_workbook(io.BytesIO(response.content))
    assert "Definitions" in book.sheetnames and "Suppression notes" in book.sheetnames


def test_every_call_is_logged(world):
    api = client_for(world["officer_a"])
    api.get(URL, {"period": "2025", "level": "network"})
    api.get(URL, {"period": "2025-03", "level": "machine", "lab": "a-two", "format": "csv"})
    api.get(URL, {"period": "2025-Q2", "level": "lab", "format": "xlsx"})
    logs = list(
        ExportLog.objects.order_by("pk").values("user", "fmt", "period", "level", "lab", "via", "rows")
    )
    assert [(log["fmt"], log["period"], log["level"], log["lab"], log["via"]) for log in logs] == [
        ("json", "2025", "network", "", "api"),
        ("csv", "2025-03", "machine", "a-two", "api"),
        ("xlsx", "2025-Q2", "lab", "", "api"),
    ]
    assert {log["user"] for log in logs} == {world["officer_a"].pk}
    assert all(log["rows"] > 0 for log in logs)


def test_the_openapi_schema_documents_the_endpoint():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    operation = schema["paths"]["/api/v1/reports/"]["get"]
    parameters = {p["name"]: p for p in operation["parameters"]}
    assert parameters["period"]["required"] is True
    assert set(parameters["level"]["schema"]["enum"]) == {"network", "lab", "machine_type", "machine"}
    assert set(parameters["format"]["schema"]["enum"]) == {"json", "csv", "xlsx"}
    assert set(operation["responses"]["200"]["content"]) == {"application/json", "text/csv", XLSX_TYPE}
    assert "report_period_invalid" in operation["responses"]["400"]["description"]
    assert "report_level_invalid" in operation["responses"]["400"]["description"]
    assert "report_lab_not_found" in operation["responses"]["404"]["description"]
    assert {"401", "403"} <= set(operation["responses"])
