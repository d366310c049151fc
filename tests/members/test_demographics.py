"""The profile's statistics answers: the report categories, opt-in, "prefer not to say", a birth year
(never a date), initiatives ticked on the same form, and the migration of the old answers."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.urls import reverse

from fablab.members.forms import ProfileForm, initiatives_offered
from fablab.members.models import MemberProfile
from fablab.reports.definitions import AGE_BANDS, GENDERS, USER_CATEGORIES
from fablab.trainings.models import Initiative, InitiativeParticipation
from tests.factories import BookingFactory, LabFactory, MachineFactory, ProgrammeFactory, UserFactory


def _post(client, **answers):
    data = {"language": "en", **answers}
    return client.post(reverse("members:profile"), data)


def _initiative(slug, *labs):
    programme = ProgrammeFactory(labs=list(labs))
    return Initiative.objects.create(programme=programme, slug=slug, name=slug.title())


@pytest.mark.django_db
def test_the_choices_are_the_report_categories_with_prefer_not_to_say_first():
    for field, categories in [
        ("gender", GENDERS),
        ("age_band", AGE_BANDS),
        ("user_category", USER_CATEGORIES),
    ]:
        choices = MemberProfile._meta.get_field(field).choices
        assert choices[0][0] == "" and str(choices[0][1]) == "Prefer not to say"
        assert [code for code, _label in choices[1:]] == [code for code in categories if code]


@pytest.mark.django_db
def test_consented_answers_are_kept(client):
    user = UserFactory()
    client.force_login(user)
    response = _post(
        client, statistics_consent="on", gender="another", birth_year="1990", user_category="student"
    )
    assert response.status_code == 302
    profile = MemberProfile.objects.get(user=user)
    assert (profile.gender, profile.birth_year, profile.age_band, profile.user_category) == (
        "another",
        1990,
        "",
        "student",
    )


@pytest.mark.django_db
def test_an_age_band_is_kept_only_without_a_birth_year(client):
    user = UserFactory()
    client.force_login(user)
    _post(client, statistics_consent="on", age_band="51+")
    assert MemberProfile.objects.get(user=user).age_band == "51+"
    _post(client, statistics_consent="on", age_band="51+", birth_year="1960")
    profile = MemberProfile.objects.get(user=user)
    assert (profile.birth_year, profile.age_band) == (1960, "")


@pytest.mark.django_db
def test_every_question_may_be_left_unanswered(client):
    user = UserFactory()
    client.force_login(user)
    assert _post(client, statistics_consent="on").status_code == 302
    profile = MemberProfile.objects.get(user=user)
    assert profile.statistics_consent
    assert (profile.gender, profile.birth_year, profile.age_band, profile.user_category) == ("", None, "", "")


@pytest.mark.django_db
def test_withdrawing_consent_empties_the_answers(client):
    user = UserFactory()
    client.force_login(user)
    _post(client, statistics_consent="on", gender="woman", birth_year="2001", user_category="company")
    _post(client, gender="woman", birth_year="2001", user_category="company")
    profile = MemberProfile.objects.get(user=user)
    assert not profile.statistics_consent
    assert (profile.gender, profile.birth_year, profile.age_band, profile.user_category) == ("", None, "", "")


@pytest.mark.django_db
@time_machine.travel("2026-06-01 12:00Z", tick=False)
@pytest.mark.parametrize(("year", "valid"), [(1899, False), (1900, True), (2026, True), (2027, False)])
def test_a_birth_year_is_from_1900_to_this_year(year, valid):
    user = UserFactory()
    form = ProfileForm(
        {"language": "en", "statistics_consent": "on", "birth_year": str(year)}, instance=user.profile
    )
    assert form.is_valid() is valid
    if not valid:
        assert "birth_year" in form.errors


@pytest.mark.django_db
def test_an_unknown_category_is_refused():
    user = UserFactory()
    form = ProfileForm(
        {"language": "en", "statistics_consent": "on", "gender": "non-binary"}, instance=user.profile
    )
    assert not form.is_valid()
    assert "gender" in form.errors


@pytest.mark.django_db
def test_the_page_explains_the_statistics_and_never_asks_a_date_for_them(client):
    user = UserFactory()
    client.force_login(user)
    html = client.get(reverse("members:profile")).content.decode()
    assert "fewer than 10 people is never shown" in html
    assert "never used to decide anything about you" in html
    assert 'name="birth_year"' in html and 'type="number"' in html
    assert 'name="birth_date"' not in html


@pytest.mark.django_db
def test_initiatives_are_those_of_the_labs_the_member_uses_and_ticked_on_the_form(client):
    used, other = LabFactory(), LabFactory()
    mine = _initiative("young-makers", used)
    elsewhere = _initiative("women-in-tech", other)
    user = UserFactory()
    BookingFactory(
        member=user,
        machine=MachineFactory(lab=used),
        start=dt.datetime(2026, 5, 1, 10, tzinfo=dt.UTC),
        end=dt.datetime(2026, 5, 1, 11, tzinfo=dt.UTC),
    )
    assert list(initiatives_offered(user)) == [mine]

    client.force_login(user)
    _post(client, statistics_consent="on", initiatives=[mine.pk])
    assert list(InitiativeParticipation.objects.filter(member=user).values_list("initiative", flat=True)) == [
        mine.pk
    ]
    # Not offered, so not accepted.
    response = _post(client, statistics_consent="on", initiatives=[mine.pk, elsewhere.pk])
    assert response.status_code == 200
    _post(client, statistics_consent="on")
    assert not InitiativeParticipation.objects.filter(member=user).exists()


@pytest.mark.django_db
def test_a_newcomer_is_offered_every_initiative():
    first, second = _initiative("young-makers", LabFactory()), _initiative("women-in-tech", LabFactory())
    assert set(initiatives_offered(UserFactory())) == {first, second}


# ------------------------------------------------------------------------------------------ migration

BEFORE = [("members", "0008_translated_names")]
AFTER = [("members", "0009_demographics_report_categories")]


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.fixture
def back_to_the_latest_schema():
    yield
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
def test_old_answers_move_to_the_report_categories(back_to_the_latest_schema):
    old = _migrate(BEFORE)
    User = old.get_model("auth", "User")
    Profile = old.get_model("members", "MemberProfile")
    answers = {
        "a": ("non-binary", "under-18"),
        "b": ("other", "18-25"),
        "c": ("woman", "51-65"),
        "d": ("man", "over-65"),
        "e": ("", "36-50"),
    }
    for name, (gender, band) in answers.items():
        Profile.objects.create(
            user=User.objects.create(username=name), gender=gender, age_band=band, calendar_token=name
        )

    new = _migrate(AFTER)

    rows = dict(
        (u, (g, b, y, c))
        for u, g, b, y, c in new.get_model("members", "MemberProfile").objects.values_list(
            "user__username", "gender", "age_band", "birth_year", "user_category"
        )
    )
    assert rows == {
        "a": ("another", "", None, ""),  # under 18 cannot be split into under 13 / 13 to 17
        "b": ("another", "18-25", None, ""),
        "c": ("woman", "51+", None, ""),
        "d": ("man", "51+", None, ""),
        "e": ("", "36-50", None, ""),
    }


@pytest.mark.django_db(transaction=True)
def test_new_answers_go_back_to_the_old_choices(back_to_the_latest_schema):
    """Migration 0009 undone: each report category's answer goes back to an old answer that covered it."""
    new = _migrate(AFTER)
    User = new.get_model("auth", "User")
    Profile = new.get_model("members", "MemberProfile")
    answers = {
        "a": ("another", "under-13"),
        "b": ("woman", "13-17"),
        "c": ("man", "51+"),
        "d": ("", "26-35"),
    }
    for name, (gender, band) in answers.items():
        Profile.objects.create(
            user=User.objects.create(username=name), gender=gender, age_band=band, calendar_token=name
        )

    old = _migrate(BEFORE)

    rows = dict(
        (u, (g, b))
        for u, g, b in old.get_model("members", "MemberProfile").objects.values_list(
            "user__username", "gender", "age_band"
        )
    )
    assert rows == {
        "a": ("other", "under-18"),
        "b": ("woman", "under-18"),
        "c": ("man", "51-65"),
        "d": ("", "26-35"),
    }
