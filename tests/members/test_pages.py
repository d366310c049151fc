"""Log in and out, the profile page and the language switcher."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.urls import reverse

from fablab.members.models import MemberProfile
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_login_page_renders_and_logs_in(client):
    assert client.get(reverse("members:login")).status_code == 200
    UserFactory(username="lena")
    response = client.post(reverse("members:login"), {"username": "lena", "password": "pw-test-1234"})
    assert response.status_code == 302
    assert response["Location"] == reverse("labs:list")


def test_a_wrong_password_is_an_error_not_a_login(client):
    UserFactory(username="lena")
    response = client.post(reverse("members:login"), {"username": "lena", "password": "nope"})
    assert response.status_code == 200
    assert 'role="alert"' in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_logout_is_a_post(client):
    client.force_login(UserFactory())
    response = client.post(reverse("members:logout"))
    assert response.status_code == 302
    assert "_auth_user_id" not in client.session


def test_profile_shows_the_calendar_link_and_needs_a_login(client):
    assert client.get(reverse("members:profile")).status_code == 302
    user = UserFactory()
    client.force_login(user)
    html = client.get(reverse("members:profile")).content.decode()
    assert f"/calendar/member/{user.profile.calendar_token}.ics" in html
    assert "Prefer not to say" in html


def test_saving_the_profile_keeps_answers_only_with_consent(client):
    user = UserFactory()
    client.force_login(user)
    url = reverse("members:profile")
    client.post(url, {"language": "fr", "statistics_consent": "on", "age_band": "26-35", "gender": "woman"})
    profile = MemberProfile.objects.get(user=user)
    assert (profile.language, profile.statistics_consent, profile.age_band, profile.gender) == (
        "fr",
        True,
        "26-35",
        "woman",
    )
    client.post(url, {"language": "fr", "age_band": "26-35", "gender": "woman"})
    profile.refresh_from_db()
    assert (profile.statistics_consent, profile.age_band, profile.gender) == (False, "", "")
    assert '<html lang="fr">' in client.get(url).content.decode()


def test_bad_profile_input_is_an_error(client):
    user = UserFactory()
    client.force_login(user)
    response = client.post(reverse("members:profile"), {"language": "xx", "gender": "dragon"})
    assert response.status_code == 200
    assert MemberProfile.objects.get(user=user).language == "en"


def test_resetting_the_calendar_link_replaces_it(client):
    user = UserFactory()
    client.force_login(user)
    old = user.profile.calendar_token
    assert client.get(reverse("members:reset_calendar")).status_code == 405
    client.post(reverse("members:reset_calendar"))
    user.profile.refresh_from_db()
    assert user.profile.calendar_token != old
    html = client.get(reverse("members:profile")).content.decode()
    assert old not in html and user.profile.calendar_token in html


def test_the_switcher_saves_the_members_language_and_the_next_page_speaks_it(client):
    user = UserFactory()
    client.force_login(user)
    response = client.post(
        reverse("members:set_language"), {"language": "nl", "next": reverse("booking:mine")}
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("booking:mine")
    assert MemberProfile.objects.get(user=user).language == "nl"
    html = client.get(response["Location"]).content.decode()
    assert '<html lang="nl">' in html
    assert 'value="nl" lang="nl"' in html and 'aria-pressed="true" class="current">NL' in html


def test_the_saved_language_follows_the_member_to_a_new_device(client):
    user = UserFactory(language="fr")
    client.post(reverse("members:login"), {"username": user.username, "password": "pw-test-1234"})
    assert '<html lang="fr">' in client.get(reverse("labs:list")).content.decode()


def test_anonymous_visitors_switch_by_cookie_only(client):
    response = client.post(reverse("members:set_language"), {"language": "fr", "next": "/labs/"})
    assert response.cookies[settings.LANGUAGE_COOKIE_NAME].value == "fr"
    assert '<html lang="fr">' in client.get("/labs/").content.decode()
    assert not MemberProfile.objects.exists()


def test_an_unknown_language_or_foreign_next_changes_nothing(client):
    user = UserFactory(language="en")
    client.force_login(user)
    response = client.post(
        reverse("members:set_language"), {"language": "de", "next": "https://evil.example/"}
    )
    assert response["Location"] == reverse("labs:list")
    assert settings.LANGUAGE_COOKIE_NAME not in response.cookies
    assert MemberProfile.objects.get(user=user).language == "en"
    assert client.get(reverse("members:set_language")).status_code == 405


def test_every_page_sets_html_lang(client):
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "nl"
    for url in (reverse("labs:list"), reverse("members:login")):
        assert '<html lang="nl">' in client.get(url).content.decode()
