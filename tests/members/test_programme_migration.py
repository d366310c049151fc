"""Migration 0003: flagged programme officers keep their access as officers of one programme."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("members", "0002_programme_certificationaudit"), ("labs", "0001_initial")]
AFTER = [("members", "0004_remove_memberprofile_is_programme_officer")]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.fixture(autouse=True)
def back_to_the_latest_schema():
    """Leave the database as every later test expects it: migrated to the newest state of every app
    (a transactional test's flush empties the tables but never migrates them back)."""
    yield
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


def test_flagged_officers_become_officers_of_a_programme_funding_every_lab():
    old = migrate(BEFORE)
    User = old.get_model("auth", "User")
    Profile = old.get_model("members", "MemberProfile")
    Lab = old.get_model("labs", "Lab")
    officer = User.objects.create(username="olivier")
    maker = User.objects.create(username="mila")
    Profile.objects.create(user=officer, is_programme_officer=True, calendar_token="t-officer")
    Profile.objects.create(user=maker, is_programme_officer=False, calendar_token="t-maker")
    labs = {Lab.objects.create(slug=slug, name=slug).pk for slug in ("north", "south")}

    new = migrate(AFTER)

    Programme = new.get_model("members", "Programme")
    programme = Programme.objects.get()
    assert set(programme.officers.values_list("username", flat=True)) == {"olivier"}
    assert set(programme.labs.values_list("pk", flat=True)) == labs


def test_without_flagged_officers_no_programme_is_made():
    old = migrate(BEFORE)
    User = old.get_model("auth", "User")
    Profile = old.get_model("members", "MemberProfile")
    Profile.objects.create(user=User.objects.create(username="mila"), calendar_token="t-maker")
    new = migrate(AFTER)
    assert not new.get_model("members", "Programme").objects.exists()
