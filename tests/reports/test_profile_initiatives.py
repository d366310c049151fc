"""The initiatives a member's profile offers (``fablab.members.forms.initiatives_offered``), the question
behind the reports' declared participants (P11). It once OR-ed the four ways of using a lab (bookings,
training and workshop registrations, memberships) in one statement, whose joins multiplied each other's
rows: minutes for a member with a year of history."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from fablab.booking.models import Booking, Series, WorkshopRegistration
from fablab.members import forms
from fablab.members.models import LabMembership
from fablab.trainings.models import Initiative, Registration, TrainingSession
from tests.factories import (
    BookingFactory,
    LabFactory,
    MachineFactory,
    ProgrammeFactory,
    TrainingFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

START = dt.datetime(2026, 1, 5, 10, tzinfo=dt.UTC)
#: The tables of the four ways of using a lab.
WAYS = [model._meta.db_table for model in (Booking, Registration, WorkshopRegistration, LabMembership)]


def history(member, lab, days: int) -> None:
    """``days`` days on which ``member`` booked a machine of ``lab``, trained there and took a workshop,
    and their membership of the lab."""
    machine = MachineFactory(lab=lab)
    training = TrainingFactory()
    series = Series.objects.create(
        kind=Series.Kind.WORKSHOP,
        lab=lab,
        rrule=f"FREQ=DAILY;COUNT={days}",
        first_day=START.date(),
        start_time=dt.time(14),
        duration=dt.timedelta(hours=2),
    )
    for n in range(days):
        start = START + dt.timedelta(days=n)
        BookingFactory(member=member, machine=machine, start=start, end=start + dt.timedelta(hours=1))
        session = TrainingSession.objects.create(
            training=training, lab=lab, start=start, end=start + dt.timedelta(hours=2), seats=4
        )
        Registration.objects.create(session=session, member=member, status="registered", attended=True)
        WorkshopRegistration.objects.create(
            series=series, occurrence_start=start + dt.timedelta(hours=4), member=member, registered_at=start
        )
    LabMembership.objects.create(lab=lab, member=member)


def test_the_offered_initiatives_take_a_few_queries_of_one_way_each_however_much_history(
    django_assert_max_num_queries,
):
    lab = LabFactory()
    mine = Initiative.objects.create(programme=ProgrammeFactory(labs=[lab]), slug="young", name="Young")
    Initiative.objects.create(programme=ProgrammeFactory(labs=[LabFactory()]), slug="other", name="Other")
    newcomer = UserFactory()
    history(newcomer, lab, 1)
    with CaptureQueriesContext(connection) as few:
        assert list(forms.initiatives_offered(newcomer)) == [mine]

    regular = UserFactory()
    history(regular, lab, 12)
    for _ in range(5):
        history(UserFactory(), lab, 3)  # other members' history is none of this member's queries
    with django_assert_max_num_queries(len(few)) as many:
        assert list(forms.initiatives_offered(regular)) == [mine]
    for query in many.captured_queries:
        assert sum(f'"{table}"' in query["sql"] for table in WAYS) <= 1, query["sql"]
