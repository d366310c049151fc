"""The demo's story: the seed books today and tomorrow, the simulated makers check in (all but the
chosen no-shows), start jobs through the simulators' control directory, and now and then walk in."""

from __future__ import annotations

import datetime as dt
import io
import random
import zoneinfo

import pytest
import time_machine
from django.core.management import call_command
from django.utils import timezone

from devices.models import MachineLink, MachineStatus
from fablab.booking.models import Booking
from fablab.demo import actors, story
from fablab.labs.models import Machine, MachineType
from fablab.members.models import MemberProfile
from firmware_bridge.simulators import demo_control

pytestmark = pytest.mark.django_db

BRUSSELS = zoneinfo.ZoneInfo("Europe/Brussels")
#: A Wednesday morning: both demo labs open at 10:00 at the latest, and stay open until 17:30.
MORNING = dt.datetime(2031, 3, 12, 9, 0, tzinfo=BRUSSELS)


def seed() -> None:
    call_command("seed_demo", stdout=io.StringIO())


@pytest.fixture
def seeded():
    with time_machine.travel(MORNING, tick=False):
        seed()


def story_bookings():
    """The demo makers' bookings from today on (not the past ones of fablab.demo.scenes)."""
    return Booking.objects.filter(
        member__username__in=story.MAKERS, start__gte=MORNING - dt.timedelta(hours=12)
    )


def test_the_seed_books_today_and_tomorrow_and_a_training_session(seeded):
    days = [b.start.astimezone(BRUSSELS).date() for b in story_bookings()]
    for day in (MORNING.date(), MORNING.date() + dt.timedelta(days=1)):
        booked = {b.machine.slug for b in story_bookings() if b.start.astimezone(BRUSSELS).date() == day}
        assert len(booked) >= 5, (day, booked)
    assert days.count(MORNING.date()) >= 10
    training = Booking.objects.get(kind=Booking.Kind.TRAINING, title=story.TRAINING_TITLE)
    assert training.member is None and training.title == story.TRAINING_TITLE
    assert training.machine.slug == story.TRAINING_MACHINE


def test_the_seed_sets_pins_badges_end_actions_and_walk_ins(seeded):
    maker = MemberProfile.objects.get(user__username="maker")
    assert maker.kiosk_pin.startswith(("pbkdf2", "argon2", "md5", "bcrypt", "scrypt"))
    assert maker.badge_number == "04A1B2C3"
    assert MemberProfile.objects.get(user__username="newbie").kiosk_pin
    assert MachineType.objects.get(slug="3d-printer").default_end_action == "finish"
    assert MachineType.objects.get(slug="laser-cutter").default_end_action == "stop"
    assert set(Machine.objects.filter(walk_ins_allowed=True).values_list("slug", flat=True)) == {
        "prusa-mk4-2",
        "ultimaker-s3",
    }


def test_the_seed_is_idempotent(seeded):
    before = sorted(story_bookings().values_list("machine__slug", "start"))
    trainings = Booking.objects.filter(kind=Booking.Kind.TRAINING).count()  # the story's and the sessions'
    pins = dict(MemberProfile.objects.values_list("user__username", "kiosk_pin"))
    with time_machine.travel(MORNING + dt.timedelta(minutes=20), tick=False):
        seed()
    assert sorted(story_bookings().values_list("machine__slug", "start")) == before
    assert Booking.objects.filter(kind=Booking.Kind.TRAINING).count() == trainings
    assert dict(MemberProfile.objects.values_list("user__username", "kiosk_pin")) == pins


def test_the_interlocked_demo_machines_are_the_lasers_behind_a_lock(seeded):
    """They boot disabled (``simulate --start-disabled``, see test_run_demo) and unlock for a check-in."""
    assert set(MachineLink.objects.filter(interlock=True).values_list("machine__slug", flat=True)) == {
        "co2-laser",
        "epilog-laser",
        "trotec-laser",
    }


def _pass_at(makers: actors.Makers, moment: dt.datetime) -> list[str]:
    with time_machine.travel(moment, tick=False):
        return makers.run_pass(timezone.now())


def test_a_pass_checks_in_every_booking_but_the_no_shows(seeded, tmp_path):
    makers = actors.Makers(control=tmp_path, rng=random.Random(1), walk_in_every_s=1e12)
    first = min(story_bookings().values_list("start", flat=True))
    last = first + dt.timedelta(hours=2)
    ids = list(story_bookings().filter(start__lte=last).values_list("pk", flat=True))
    assert len(ids) >= 6
    for minutes in range(0, 121, 5):
        _pass_at(makers, first + dt.timedelta(minutes=minutes))
    statuses = dict(Booking.objects.filter(pk__in=ids).values_list("pk", "status"))
    for pk, status in statuses.items():
        member = Booking.objects.get(pk=pk).member.username
        if actors.is_no_show(pk):
            assert status == Booking.Status.CONFIRMED, "a no-show is left alone"
        elif member != "newbie":  # newbie holds no certification: the check-in is refused
            assert status == Booking.Status.CHECKED_IN, pk
    checked_in = Booking.objects.filter(pk__in=ids, status=Booking.Status.CHECKED_IN)
    assert checked_in.count() >= len(ids) // 2
    assert set(checked_in.values_list("check_in_via", flat=True)) <= {"kiosk", "page"}


def test_the_no_show_choice_is_stable_and_about_one_in_six():
    draws = [actors.is_no_show(pk) for pk in range(1, 601)]
    assert draws == [actors.is_no_show(pk) for pk in range(1, 601)]
    assert 60 <= sum(draws) <= 140


def test_a_job_is_requested_a_minute_after_the_check_in(seeded, tmp_path):
    makers = actors.Makers(control=tmp_path, rng=random.Random(2), walk_in_every_s=1e12)
    shows = [
        b
        for b in story_bookings().exclude(member__username="newbie").order_by("start")
        if not actors.is_no_show(b.pk)
    ]
    first = shows[0].start
    _pass_at(makers, first)
    booking = Booking.objects.get(pk=shows[0].pk)
    assert booking.status == Booking.Status.CHECKED_IN
    assert not demo_control.pending(tmp_path, booking.machine.slug)
    events = _pass_at(makers, first + dt.timedelta(minutes=2))
    assert demo_control.pending(tmp_path, booking.machine.slug), events
    job = demo_control.take_job(tmp_path, booking.machine.slug)
    assert job["seconds"] > 0 and job["name"].endswith(".gcode")
    # One job per booking: the next pass asks for no other.
    _pass_at(makers, first + dt.timedelta(minutes=3))
    assert not demo_control.pending(tmp_path, booking.machine.slug)


def test_now_and_then_a_walk_in_runs_an_unbooked_idle_machine(seeded, tmp_path):
    moment = MORNING.replace(hour=11)
    for machine in Machine.objects.all():
        MachineStatus.objects.update_or_create(machine=machine, defaults={"state": "idle", "online": True})
    makers = actors.Makers(control=tmp_path, rng=random.Random(7), pass_s=5, walk_in_every_s=60)
    walk_ins = []
    with time_machine.travel(moment, tick=False):
        for _ in range(40):
            walk_ins += [e for e in makers.walk_in(timezone.now()) if "walk-in" in e]
    assert 1 <= len(walk_ins) < 40
    requested = {p.stem for p in tmp_path.glob("*.job")}
    interlocked = set(MachineLink.objects.filter(interlock=True).values_list("machine__slug", flat=True))
    assert requested and not requested & interlocked
    with time_machine.travel(moment, tick=False):
        booked_now = set(
            Booking.objects.filter(
                status__in=Booking.HOLDING,
                start__lt=timezone.now() + dt.timedelta(minutes=45),
                end__gt=timezone.now(),
            ).values_list("machine__slug", flat=True)
        )
    assert not requested & booked_now


def test_the_makers_book_ahead_when_the_day_thins_out(seeded, tmp_path):
    evening = MORNING.replace(hour=17)  # after the seeded bookings of the day
    makers = actors.Makers(control=tmp_path, rng=random.Random(3), walk_in_every_s=1e12)
    before = story_bookings().count()
    with time_machine.travel(evening, tick=False):
        events = makers.book_ahead(timezone.now())
    assert story_bookings().count() > before, events
    assert all(" booked " in e for e in events)
