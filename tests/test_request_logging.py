"""The web log (var/log/web.log under `make run`): one line per refused or missing request.

An expected 403 is a warning line without a traceback; a 404 appears once, not
twice (Django's default "django" console handler used to write it next to root's).
"""

from __future__ import annotations

import datetime as dt
import io
import logging

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from tests.factories import BookingFactory, UserFactory, api_token

pytestmark = pytest.mark.django_db


@pytest.fixture
def web_log():
    """Every stream handler of the logging tree writes into one buffer, as they all write to web.log."""
    buffer = io.StringIO()
    loggers = [logging.getLogger()] + [
        logger for logger in logging.Logger.manager.loggerDict.values() if isinstance(logger, logging.Logger)
    ]
    swapped = []
    for logger in loggers:
        for handler in logger.handlers:
            if type(handler) is logging.StreamHandler:  # not pytest's capture handlers
                swapped.append((handler, handler.setStream(buffer)))
    assert swapped, "no console handler: LOGGING changed shape"
    yield buffer
    for handler, stream in swapped:
        handler.setStream(stream)


@pytest.mark.parametrize("debug", [True, False])
def test_a_404_is_logged_once(client, settings, web_log, debug):
    settings.DEBUG = debug  # `make run` runs with DEBUG on
    assert client.get("/no-such-page/").status_code == 404
    assert web_log.getvalue().count("Not Found: /no-such-page/") == 1


def test_an_api_404_is_logged_once(web_log):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token(UserFactory())}")
    assert client.get("/api/v1/bookings/987654/").status_code == 404
    assert web_log.getvalue().count("Not Found: /api/v1/bookings/987654/") == 1


def test_a_refused_manager_page_is_one_warning_line_without_a_traceback(client, web_log, caplog):
    client.force_login(UserFactory())
    with caplog.at_level(logging.WARNING, logger="django.request"):
        assert client.get(reverse("booking:manage")).status_code == 403
    records = [r for r in caplog.records if r.name == "django.request"]
    assert [r.getMessage() for r in records] == ["Forbidden (Permission denied): /manage/"]
    assert records[0].exc_info is None and records[0].levelno == logging.WARNING
    text = web_log.getvalue()
    assert text.count("Forbidden (Permission denied): /manage/") == 1
    assert "Traceback" not in text and "PermissionDenied" not in text


def test_a_refused_api_request_is_one_warning_line_without_a_traceback(web_log, caplog):
    start = timezone.now() + dt.timedelta(days=2)
    booking = BookingFactory(start=start, end=start + dt.timedelta(hours=1))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token(booking.member)}")
    with caplog.at_level(logging.WARNING, logger="django.request"):
        response = client.post(f"/api/v1/bookings/{booking.pk}/approve/")
    assert response.status_code == 403
    records = [r for r in caplog.records if r.name == "django.request"]
    assert len(records) == 1 and records[0].exc_info is None
    assert "Traceback" not in web_log.getvalue()


def test_a_server_error_keeps_its_traceback(client, web_log, monkeypatch):
    """Only expected refusals lose the traceback: a bug must still show where it happened."""
    from fablab.booking import views

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(views.selectors, "upcoming_and_past", broken)
    client.raise_request_exception = False
    client.force_login(UserFactory())
    assert client.get(reverse("booking:mine")).status_code == 500
    text = web_log.getvalue()
    assert "Traceback" in text and "RuntimeError: a bug" in text


def test_a_server_error_is_mailed_to_the_admins_without_any_credential(
    client, settings, monkeypatch, mailoutbox
):
    from fablab.booking import views

    secret = "hub-password-XYZ123"
    settings.DEBUG = False
    settings.ADMINS = [("", "it@example.org")]
    settings.MQTT_URL = f"mqtt://fablab-hub:{secret}@broker.example.org:1883"

    def broken(*args, **kwargs):
        raise RuntimeError(f"could not reach mqtt://fablab-hub:{secret}@broker.example.org:1883")

    monkeypatch.setattr(views.selectors, "upcoming_and_past", broken)
    client.raise_request_exception = False
    client.force_login(UserFactory())
    assert client.get(reverse("booking:mine")).status_code == 500
    assert [m.to for m in mailoutbox] == [["it@example.org"]]
    report = mailoutbox[0]
    assert "RuntimeError" in report.body
    everything = report.body + "".join(str(content) for content, _type in report.alternatives)
    assert secret not in everything
