"""Every 4xx of the API has the body {"code", "detail"} (plus "fields" for field errors)."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.cache import cache
from rest_framework import exceptions
from rest_framework.test import APIClient

from fablab.booking.api_errors import all_codes, codes_markdown_table, error_body, exception_handler
from fablab.booking.errors import RULES, BookingError
from tests.factories import UserFactory, api_token

pytestmark = pytest.mark.django_db

DOCS = Path(__file__).resolve().parents[2] / "docs" / "api.md"


@pytest.fixture(autouse=True)
def _clear_throttles():
    cache.clear()


@pytest.fixture
def api():
    client = APIClient()
    token = api_token(UserFactory())
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    data = response.json()
    assert data["code"] == code, data
    assert isinstance(data["detail"], str) and data["detail"]
    assert set(data) <= {"code", "detail", "fields"}
    return data


@pytest.mark.parametrize("authenticated", [False, True])
@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/nothing-here/",
        "/api/v1/bookings",
        "/api/v1/labs/1/",
        "/api/v1/bookings/1/refund/",
        "/api/v1/bookings/a%0Ab/",
    ],
)
@pytest.mark.parametrize("method", ["get", "post", "delete"])
def test_unknown_api_paths_are_a_json_404(api, authenticated, path, method):
    client = api if authenticated else APIClient()
    assert_error(getattr(client, method)(path), 404, "not_found")


def test_huge_ids_are_not_found(api):
    for path in ["/api/v1/bookings/{}/", "/api/v1/bookings/{}/cancel/", "/api/v1/machines/{}/"]:
        method = api.post if "cancel" in path else api.get
        assert_error(method(path.format(10**40)), 404, "not_found")


def test_wrong_method_is_405(api):
    assert_error(api.delete("/api/v1/labs/"), 405, "method_not_allowed")
    assert_error(api.put("/api/v1/bookings/", {}, format="json"), 405, "method_not_allowed")
    assert_error(api.get("/api/v1/bookings/1/cancel/"), 405, "method_not_allowed")
    assert_error(APIClient().get("/api/v1/auth/token/"), 405, "method_not_allowed")


@pytest.mark.parametrize("raw", [b"{not json", b"NaN", b'{"machine": Infinity}', b"\xff\xfe", b""])
def test_unparsable_json_is_parse_error(api, raw):
    response = api.generic("POST", "/api/v1/bookings/", raw, content_type="application/json")
    if raw == b"":
        # An empty body is an empty form: every field is missing.
        assert set(assert_error(response, 400, "invalid")["fields"]) == {"machine", "start", "end"}
    else:
        assert_error(response, 400, "parse_error")


def test_unsupported_media_type_is_415(api):
    response = api.generic("POST", "/api/v1/bookings/", b"machine=1", content_type="text/plain")
    assert_error(response, 415, "unsupported_media_type")


def test_unacceptable_accept_header_is_406(api):
    assert_error(api.get("/api/v1/labs/", HTTP_ACCEPT="text/csv"), 406, "not_acceptable")


def test_non_object_bodies_are_invalid_without_fields(api):
    for raw in (b"[]", b"[1, 2]", b'"booking"', b"42", b"null", b"true"):
        response = api.generic("POST", "/api/v1/bookings/", raw, content_type="application/json")
        assert "fields" not in assert_error(response, 400, "invalid")


def test_session_without_csrf_token_is_permission_denied():
    user = UserFactory()
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.get("/api/v1/labs/").status_code == 200
    assert_error(client.post("/api/v1/bookings/", {}, format="json"), 403, "permission_denied")


def test_token_endpoint_is_throttled():
    client = APIClient()
    # Another name each time: the client address's count, not an account's (tests/members/test_accounts.py).
    statuses = [
        client.post("/api/v1/auth/token/", {"username": f"x{i}", "password": "y"}, format="json").status_code
        for i in range(25)
    ]
    assert statuses[:20] == [400] * 20
    response = client.post("/api/v1/auth/token/", {"username": "z", "password": "y"}, format="json")
    assert_error(response, 429, "throttled")
    assert int(response["Retry-After"]) > 0


def test_messages_follow_the_request_language():
    english = assert_error(APIClient().get("/api/v1/labs/"), 401, "not_authenticated")
    french_response = APIClient().get("/api/v1/labs/", HTTP_ACCEPT_LANGUAGE="fr")
    french = assert_error(french_response, 401, "not_authenticated")
    # DRF ships its own French messages, so this holds before our catalogues exist.
    assert french_response["Content-Language"] == "fr"
    assert french["detail"] != english["detail"]


def test_booking_errors_keep_their_status_and_code():
    for code, (status, message) in RULES.items():
        response = exception_handler(BookingError(code), {})
        assert response.status_code == status
        assert response.data == {"code": code, "detail": str(message)}
        assert 400 <= status < 500


def test_other_exceptions_stay_500():
    assert exception_handler(ValueError("bug"), {}) is None


def test_nested_field_errors_are_flattened():
    exc = exceptions.ValidationError(
        {"non_field_errors": ["Whole thing wrong."], "a": ["Bad."], "b": {"0": ["Worse."]}, "c": "Plain."}
    )
    assert error_body(exc) == {
        "code": "invalid",
        "detail": "Whole thing wrong.",
        "fields": {"a": ["Bad."], "b": ["0: Worse."], "c": ["Plain."]},
    }
    assert error_body(exceptions.ValidationError("Only this.")) == {"code": "invalid", "detail": "Only this."}


def test_every_code_is_a_4xx():
    assert all(400 <= status < 500 for status in all_codes().values())
    assert set(RULES) <= set(all_codes())


def test_the_guide_lists_every_code():
    text = DOCS.read_text()
    assert codes_markdown_table() in text, "regenerate the table in docs/api.md with codes_markdown_table()"
    # Django's shell announces its automatic imports unless run with -v 0.
    assert "imported automatically" not in text
