"""The kiosk PIN on the profile page: 4 to 8 digits, typed twice, stored hashed; member and badge numbers shown."""

from __future__ import annotations

import pytest
from django.contrib.auth.hashers import check_password, make_password
from django.urls import reverse

from fablab.members.forms import KioskPinForm
from fablab.members.models import MemberProfile
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def member(client):
    user = UserFactory(username="maker")
    client.force_login(user)
    return user


def stored_pin(user) -> str:
    return MemberProfile.objects.get(user=user).kiosk_pin


@pytest.mark.parametrize("pin", ["1234", "00000000", "907150"])
def test_a_pin_of_four_to_eight_digits_is_accepted(pin):
    assert KioskPinForm({"pin": pin, "pin_again": pin}).is_valid()


@pytest.mark.parametrize(
    "pin",
    ["123", "123456789", "12a4", "12 34", " 1234", "١٢٣٤", "１２３４", "12²4", ""],
)
def test_anything_else_is_refused(pin):
    form = KioskPinForm({"pin": pin, "pin_again": pin})
    assert not form.is_valid()
    assert "pin" in form.errors


def test_the_two_pins_must_match():
    form = KioskPinForm({"pin": "1234", "pin_again": "1243"})
    assert not form.is_valid()
    assert form.errors["pin_again"] == ["The two PINs differ."]


def test_the_profile_shows_the_member_and_badge_numbers(client, member):
    MemberProfile.objects.filter(user=member).update(badge_number="04A7F3C2")
    html = client.get(reverse("members:profile")).content.decode()
    number = MemberProfile.objects.get(user=member).member_number
    assert number == f"{member.pk:05d}"
    assert f'<dd id="member-number">{number}</dd>' in html
    assert "04A7F3C2" in html
    assert "Not set: kiosks do not accept your number yet." in html
    assert "<title>Profile · FabLab</title>" in html
    assert html.count('id="kiosk"') == 1


def test_setting_the_pin_stores_only_its_hash(client, member):
    response = client.post(reverse("members:kiosk_pin"), {"pin": "4821", "pin_again": "4821"})
    assert response.status_code == 302
    stored = stored_pin(member)
    assert "4821" not in stored
    assert check_password("4821", stored)
    assert not check_password("4822", stored)


def test_a_refused_pin_changes_nothing_and_says_why(client, member):
    MemberProfile.objects.filter(user=member).update(kiosk_pin=make_password("1111"))
    response = client.post(reverse("members:kiosk_pin"), {"pin": "12", "pin_again": "12"})
    assert response.status_code == 400
    assert "A PIN is 4 to 8 digits." in response.content.decode()
    assert check_password("1111", stored_pin(member))


def test_the_pin_can_be_removed(client, member):
    MemberProfile.objects.filter(user=member).update(kiosk_pin=make_password("1111"))
    assert "Remove the PIN" in client.get(reverse("members:profile")).content.decode()
    client.post(reverse("members:kiosk_pin"), {"clear": "1"})
    assert stored_pin(member) == ""


def test_only_a_signed_in_member_sets_a_pin(client):
    response = client.post(reverse("members:kiosk_pin"), {"pin": "1234", "pin_again": "1234"})
    assert response.status_code == 302
    assert reverse("members:login") in response["Location"]
    assert not MemberProfile.objects.exclude(kiosk_pin="").exists()


def test_the_profile_form_still_saves(client, member):
    response = client.post(reverse("members:profile"), {"language": "fr"})
    assert response.status_code == 302
    assert MemberProfile.objects.get(user=member).language == "fr"
