"""A programme officer oversees the labs their programme funds, and until the reports exist sees
exactly what any member sees: their own bookings and nobody's name."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.urls import reverse
from rest_framework.test import APIClient

from devices.models import Command
from tests.devices.board_fixtures import make_board
from tests.factories import ProgrammeFactory, UserFactory, api_token

pytestmark = pytest.mark.django_db

NAMES = ("Karim", "Other", "maker-b", "Anouk", "maker-a", "Mia", "manager-m", "karim-bracket")


@pytest.fixture
def board():
    cache.clear()
    return make_board()


@pytest.fixture
def officer(board):
    user = UserFactory(username="olivia-officer")
    ProgrammeFactory(name="Makers programme", labs=[board["lab"]], officers=[user])
    return user


def test_an_officer_sees_no_names_on_the_board_and_no_other_members_bookings(client, board, officer):
    client.force_login(officer)
    lab = board["lab"].slug
    pages = [
        reverse("devices:board", args=[lab]),
        reverse("devices:machine", args=[lab, "printer-1"]),
        reverse("labs:detail", args=[lab]),
        reverse("labs:machine", args=[lab, "printer-1"]),
        reverse("labs:machine", args=[lab, "laser-1"]),
        reverse("booking:mine"),
    ]
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        for name in NAMES:
            assert name not in html, (url, name)
    board_html = client.get(pages[0]).content.decode()
    assert 'class="commands"' not in board_html
    assert "Booked" in board_html


def test_an_officer_gets_no_bookings_of_others_from_the_api(board, officer):
    api = APIClient()
    token = api_token(officer)
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert api.get("/api/v1/bookings/", {"lab": board["lab"].slug}).json()["results"] == []
    assert api.get("/api/v1/bookings/").json()["results"] == []
    for booking in (board["current"], board["upcoming"]):
        assert api.get(f"/api/v1/bookings/{booking.pk}/").status_code == 404
        assert api.post(f"/api/v1/bookings/{booking.pk}/cancel/").status_code == 404
    assert api.post(f"/api/v1/bookings/{board['current'].pk}/approve/").status_code == 403


def test_an_officer_is_not_a_manager_of_the_labs_they_oversee(client, board, officer):
    client.force_login(officer)
    lab = board["lab"]
    for url in (
        reverse("booking:manage"),
        reverse("booking:approvals"),
        reverse("booking:certifications"),
        reverse("booking:day", args=[lab.slug]),
        reverse("booking:maintenance", args=[board["printer"].pk]),
    ):
        assert client.get(url).status_code == 403, url
    assert client.get(reverse("booking:cancel", args=[board["current"].pk])).status_code == 404
    response = client.post(reverse("devices:command", args=[lab.slug, "printer-1"]), {"action": "pause"})
    assert response.status_code == 403
    assert not Command.objects.exists()
    assert ">Manage<" not in client.get(reverse("labs:list")).content.decode()
    assert client.get(reverse("admin:index")).status_code == 302
