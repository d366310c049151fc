"""`make run` seeds the demo on every start; a language a demo member chose survives it."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.urls import reverse

from fablab.members.models import MemberProfile

pytestmark = pytest.mark.django_db


def seed() -> None:
    call_command("seed_demo", stdout=io.StringIO())


def language_of(username: str) -> str:
    return MemberProfile.objects.get(user__username=username).language


def test_seeding_again_keeps_the_language_maker_chose(client):
    seed()
    first = language_of("maker")
    chosen = "fr" if first != "fr" else "nl"
    client.login(username="maker", password="demo1234")
    client.post(reverse("members:set_language"), {"language": chosen, "next": "/"})
    assert language_of("maker") == chosen
    seed()  # the next `make run`
    assert language_of("maker") == chosen


def test_a_new_demo_member_still_gets_the_demo_language():
    seed()
    languages = dict(MemberProfile.objects.values_list("user__username", "language"))
    MemberProfile.objects.filter(user__username="anouk").delete()
    seed()
    assert language_of("anouk") == languages["anouk"]
