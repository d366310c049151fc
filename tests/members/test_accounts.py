"""Accounts: sign-up with email confirmation, password reset and change, API tokens (knox),
login throttling, guardians' consent and lab approval (docs/accounts.md)."""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

import pytest
import time_machine
from allauth.account.models import EmailAddress
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.cache import cache
from django.test import Client
from django.urls import reverse
from knox.models import AuthToken
from rest_framework.test import APIClient

from fablab.booking import services
from fablab.booking.errors import BookingError
from fablab.members.models import GuardianConsent, LabMembership, MemberProfile
from tests.factories import LabFactory, MachineFactory, UserFactory, api_token

pytestmark = pytest.mark.django_db

BRUSSELS = ZoneInfo("Europe/Brussels")
NOW = dt.datetime(2026, 3, 2, 9, 0, tzinfo=BRUSSELS)  # a Monday
TOKEN_URL = "/api/v1/auth/token/"
STRONG = "kettle-Orbit-42-violet"


@pytest.fixture(autouse=True)
def _clear_throttles():
    cache.clear()


def signup(client: Client, **overrides):
    data = {
        "email": "nora@example.org",
        "username": "nora",
        "password1": STRONG,
        "password2": STRONG,
        "language": "nl",
        "birth_date": "1990-05-04",
        **overrides,
    }
    return client.post(reverse("account_signup"), data)


def link_in(message) -> str:
    return re.search(r"https?://[^\s]+", message.body).group(0)


# --- sign-up, confirmation, reset, change ------------------------------------------------------------


def test_sign_up_confirm_then_log_in():
    client = Client()
    response = signup(client)
    assert response.status_code == 302
    user = get_user_model().objects.get(username="nora")
    assert user.profile.language == "nl"
    assert user.profile.birth_date == dt.date(1990, 5, 4)
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["nora@example.org"]

    # Not confirmed yet: neither the login page nor the API lets them in.
    client = Client()
    response = client.post(reverse("members:login"), {"username": "nora", "password": STRONG})
    assert response.status_code == 200 and "_auth_user_id" not in client.session
    assert APIClient().post(TOKEN_URL, {"username": "nora", "password": STRONG}).status_code == 400

    confirm_url = link_in(mail.outbox[0])
    assert client.get(confirm_url).status_code == 200
    client.post(confirm_url)
    assert EmailAddress.objects.get(user=user).verified

    client = Client()
    response = client.post(reverse("members:login"), {"username": "nora@example.org", "password": STRONG})
    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(user.pk)


def test_login_page_links_to_sign_up_and_reset():
    page = Client().get(reverse("members:login")).content.decode()
    assert reverse("account_signup") in page
    assert reverse("account_reset_password") in page


@pytest.mark.parametrize("password", ["password123", "12345678901", "qwertyuiop"])
def test_common_and_numeric_passwords_are_refused_at_sign_up(password):
    response = signup(Client(), password1=password, password2=password)
    assert response.status_code == 200
    assert response.context["form"].errors["password1"]
    assert not get_user_model().objects.filter(username="nora").exists()


def test_a_birth_date_in_the_future_is_refused():
    response = signup(Client(), birth_date="2999-01-01")
    assert response.status_code == 200
    assert "birth_date" in response.context["form"].errors


def test_password_reset_flow():
    user = UserFactory(username="ada", email="ada@example.org")
    token = api_token(user)
    client = Client()
    response = client.post(reverse("account_reset_password"), {"email": "ada@example.org"})
    assert response.status_code == 302
    assert len(mail.outbox) == 1
    reset_url = link_in(mail.outbox[0])
    response = client.get(reset_url, follow=True)
    form_url = response.redirect_chain[-1][0] if response.redirect_chain else reset_url
    response = client.post(form_url, {"password1": STRONG, "password2": STRONG})
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.check_password(STRONG)
    # The new password revoked the old API token.
    assert not AuthToken.objects.filter(user=user).exists()
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert api.get("/api/v1/labs/").status_code == 401


def test_change_password_rotates_api_tokens():
    user = UserFactory(username="ada")
    other = UserFactory(username="bob")
    api_token(user), api_token(user)
    kept = api_token(other)
    client = Client()
    client.force_login(user)
    response = client.post(
        reverse("account_change_password"),
        {"oldpassword": "pw-test-1234", "password1": STRONG, "password2": STRONG},
    )
    assert response.status_code == 302
    assert not AuthToken.objects.filter(user=user).exists()
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {kept}")
    assert api.get("/api/v1/labs/").status_code == 200


def test_rehashing_the_same_password_at_login_keeps_the_tokens(settings):
    user = UserFactory(username="ada")
    api_token(user)
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
        "django.contrib.auth.hashers.MD5PasswordHasher",
    ]
    assert user.check_password("pw-test-1234")  # upgraded to PBKDF2 and saved
    user.refresh_from_db()
    assert user.password.startswith("pbkdf2_sha256$")
    assert AuthToken.objects.filter(user=user).count() == 1


# --- API tokens ------------------------------------------------------------------------------------


def test_token_lasts_thirty_days():
    """Thirty days of real time (in UTC: Brussels changes to summer time within them)."""
    UserFactory(username="ada")
    now = NOW.astimezone(dt.UTC)
    with time_machine.travel(now, tick=False):
        response = APIClient().post(TOKEN_URL, {"username": "ada", "password": "pw-test-1234"})
        assert response.status_code == 200
        token = response.json()["token"]
        assert dt.datetime.fromisoformat(response.json()["expiry"]) == now + dt.timedelta(days=30)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    with time_machine.travel(now + dt.timedelta(days=29, hours=23), tick=False):
        assert api.get("/api/v1/labs/").status_code == 200
    with time_machine.travel(now + dt.timedelta(days=30, seconds=1), tick=False):
        assert api.get("/api/v1/labs/").status_code == 401
    assert not AuthToken.objects.exists()


def test_profile_lists_and_revokes_tokens():
    user = UserFactory(username="ada")
    first, second = api_token(user), api_token(user)
    client = Client()
    client.force_login(user)
    page = client.get(reverse("members:profile"))
    tokens = list(page.context["api_tokens"])
    assert len(tokens) == 2
    assert first not in page.content.decode() and second not in page.content.decode()

    client.post(reverse("members:revoke_token"), {"digest": tokens[0].digest})
    assert AuthToken.objects.filter(user=user).count() == 1
    # Someone else's digest revokes nothing.
    other = UserFactory(username="bob")
    api_token(other)
    client.post(reverse("members:revoke_token"), {"digest": AuthToken.objects.get(user=other).digest})
    assert AuthToken.objects.filter(user=other).count() == 1

    client.post(reverse("members:revoke_token"), {"all": "1"})
    assert not AuthToken.objects.filter(user=user).exists()


# --- throttling ------------------------------------------------------------------------------------


def _wrong_logins_with_forged_addresses(count: int, *, behind: str = "203.0.113.7"):
    """``count`` wrong passwords, each for another name and with another forged X-Forwarded-For."""
    statuses = []
    for i in range(count):
        client = APIClient(REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR=f"198.51.100.{i}, {behind}")
        statuses.append(client.post(TOKEN_URL, {"username": f"who{i}", "password": "nope"}).status_code)
    return statuses


@pytest.mark.parametrize("proxies", [0, 1])
def test_forged_forwarded_for_does_not_reset_the_address_throttle(settings, proxies):
    settings.TRUSTED_PROXY_COUNT = proxies
    statuses = _wrong_logins_with_forged_addresses(30)
    assert statuses[:20] == [400] * 20
    assert statuses[20:] == [429] * 10


def test_behind_a_proxy_each_real_client_has_its_own_count(settings):
    settings.TRUSTED_PROXY_COUNT = 1
    assert _wrong_logins_with_forged_addresses(20, behind="203.0.113.7") == [400] * 20
    # Another client behind the same proxy is not slowed by the first one's failures.
    assert _wrong_logins_with_forged_addresses(1, behind="203.0.113.8") == [400]


def test_per_account_throttle_across_addresses_and_forms():
    UserFactory(username="ada", email="ada@example.org")
    for i in range(5):
        APIClient(REMOTE_ADDR=f"10.0.1.{i}").post(TOKEN_URL, {"username": "ada", "password": "nope"})
    for i in range(5):
        Client(REMOTE_ADDR=f"10.0.2.{i}").post(
            reverse("members:login"), {"username": "ADA@example.org", "password": "nope"}
        )
    # Ten failures from ten addresses: even the right password is refused now, before it is checked.
    response = APIClient(REMOTE_ADDR="10.0.3.1").post(
        TOKEN_URL, {"username": "ada", "password": "pw-test-1234"}
    )
    assert response.status_code == 429
    assert response.json()["code"] == "throttled"
    assert int(response["Retry-After"]) > 0
    page = Client(REMOTE_ADDR="10.0.3.2").post(
        reverse("members:login"), {"username": "ada", "password": "pw-test-1234"}
    )
    assert page.status_code == 429 and int(page["Retry-After"]) > 0
    # Another account is not affected.
    UserFactory(username="bob")
    assert (
        APIClient(REMOTE_ADDR="10.0.3.1")
        .post(TOKEN_URL, {"username": "bob", "password": "pw-test-1234"})
        .status_code
        == 200
    )


def test_the_account_window_ends():
    UserFactory(username="ada")
    with time_machine.travel(NOW, tick=False):
        for i in range(10):
            APIClient(REMOTE_ADDR=f"10.0.1.{i}").post(TOKEN_URL, {"username": "ada", "password": "nope"})
        refused = APIClient().post(TOKEN_URL, {"username": "ada", "password": "pw-test-1234"})
        assert refused.status_code == 429
        wait = int(refused["Retry-After"])
    with time_machine.travel(NOW + dt.timedelta(seconds=wait), tick=False):
        assert APIClient().post(TOKEN_URL, {"username": "ada", "password": "pw-test-1234"}).status_code == 200


# --- guardians' consent ----------------------------------------------------------------------------


def _slot(days: int = 1):
    start = (NOW + dt.timedelta(days=days)).replace(hour=10)
    return start, start + dt.timedelta(hours=1)


def test_under_13_needs_a_guardians_consent_before_booking():
    machine = MachineFactory()
    child = UserFactory(username="kid")
    MemberProfile.objects.filter(user=child).update(birth_date=dt.date(2014, 3, 3))  # 12 on NOW
    start, end = _slot()
    with pytest.raises(BookingError) as refused:
        services.booking_create(machine=machine, member=child, start=start, end=end, now=NOW)
    assert refused.value.code == "guardian_consent_needed"

    manager = UserFactory(username="boss")
    machine.lab.managers.add(manager)
    client = Client()
    client.force_login(manager)
    page = client.get(reverse("members:guardian_consent"))
    assert [p.user for p in page.context["waiting"]] == [child]
    response = client.post(
        reverse("members:guardian_consent"),
        {"member": "kid", "guardian_name": "Mira Peeters", "guardian_email": "", "method": "in-person"},
    )
    assert response.status_code == 302
    consent = GuardianConsent.objects.get(member=child)
    assert consent.recorded_by == manager and consent.method == "in-person"

    booking = services.booking_create(machine=machine, member=child, start=start, end=end, now=NOW)
    assert booking.member == child


def test_thirteen_needs_no_consent_and_members_cannot_record_one():
    machine = MachineFactory()
    teen = UserFactory(username="teen")
    MemberProfile.objects.filter(user=teen).update(birth_date=dt.date(2013, 3, 2))  # 13 on NOW
    start, end = _slot()
    services.booking_create(machine=machine, member=teen, start=start, end=end, now=NOW)
    client = Client()
    client.force_login(teen)
    assert client.get(reverse("members:guardian_consent")).status_code == 403


# --- lab approval ----------------------------------------------------------------------------------


def test_lab_approval_before_the_first_booking():
    lab = LabFactory(new_members_need_approval=True)
    machine = MachineFactory(lab=lab)
    member = UserFactory(username="newbie")
    start, end = _slot()
    with pytest.raises(BookingError) as refused:
        services.booking_create(machine=machine, member=member, start=start, end=end, now=NOW)
    assert refused.value.code == "membership_pending"

    client = Client()
    client.force_login(member)
    assert client.get(reverse("labs:detail", args=[lab.slug])).context["must_ask_to_join"]
    client.post(reverse("members:join_lab", args=[lab.slug]))
    client.post(reverse("members:join_lab", args=[lab.slug]))  # twice: still one request
    membership = LabMembership.objects.get(lab=lab, member=member)
    assert not membership.approved

    outsider = UserFactory(username="outsider")
    other = Client()
    other.force_login(outsider)
    assert other.get(reverse("members:lab_members", args=[lab.slug])).status_code == 403

    manager = UserFactory(username="boss")
    lab.managers.add(manager)
    boss = Client()
    boss.force_login(manager)
    assert boss.get(reverse("members:lab_members", args=[lab.slug])).context["pending"] == [membership]
    boss.post(reverse("members:lab_members", args=[lab.slug]), {"membership": membership.pk})
    membership.refresh_from_db()
    assert membership.approved and membership.approved_by == manager

    booking = services.booking_create(machine=machine, member=member, start=start, end=end, now=NOW)
    assert booking.member == member


def test_labs_without_approval_are_unchanged():
    machine = MachineFactory()
    start, end = _slot()
    services.booking_create(machine=machine, member=UserFactory(), start=start, end=end, now=NOW)
