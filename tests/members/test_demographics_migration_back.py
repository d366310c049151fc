"""Migration 0009 undone: each report category's answer goes back to an old answer that covered it."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

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
def test_new_answers_go_back_to_the_old_choices(back_to_the_latest_schema):
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
