"""The waitlist: freed time goes to the first eligible waiting member, held for them, then to the next.

Time is passed in (``now=``) everywhere; the scene lies on fixed dates.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import zoneinfo
from decimal import Decimal

import pytest
from django.core import mail
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from fablab.booking import freed, lifecycle, services, waitlist
from fablab.booking.errors import BookingError
from fablab.booking.models import Booking, FreedTime, WaitlistEntry, WaitlistOffer
from fablab.labs.models import MachineType
from tests.factories import (
    BookingFactory,
    CertificationFactory,
    LabFactory,
    MachineFactory,
    QuotaPolicyFactory,
    TrainingFactory,
    UserFactory,
    api_token,
)

BXL = zoneinfo.ZoneInfo("Europe/Brussels")


def at(hour: int, minute: int = 0, day: int = 4) -> dt.datetime:
    """March ``day`` 2031 (the 4th is a Tuesday), Brussels wall-clock time."""
    return dt.datetime(2031, 3, day, hour, minute, tzinfo=BXL)


def refused(code: str, call, *args, **kwargs) -> BookingError:
    with pytest.raises(BookingError) as info:
        call(*args, **kwargs)
    assert info.value.code == code, info.value.detail
    return info.value


@pytest.fixture
def training():
    return TrainingFactory()


@pytest.fixture
def machine(training):
    # Notice and horizon that a normal booking of the freed time would break.
    return MachineFactory(required_training=training, min_notice_minutes=120, max_days_ahead=0)


def certified(training, **kwargs):
    member = UserFactory(**kwargs)
    CertificationFactory(member=member, training=training)
    return member


def wait(member, machine, start=None, end=None, now=None, **kwargs) -> WaitlistEntry:
    return waitlist.join(
        member=member,
        lab=machine.lab,
        machine=machine,
        start=start or at(9),
        end=end or at(18),
        now=now or at(8),
        **kwargs,
    )


def free(machine, start, end, now) -> FreedTime:
    """Time of ``machine`` freed at ``now`` the way a cancellation records it."""
    return freed.release(machine=machine, start=start, end=end, reason=FreedTime.Reason.CANCELLED, now=now)


def open_offer(entry) -> WaitlistOffer | None:
    return WaitlistOffer.objects.filter(entry=entry, status=WaitlistOffer.Status.OPEN).first()


# ------------------------------------------------------------------------------------- the no-show path


@pytest.mark.django_db
def test_a_no_show_goes_to_the_first_eligible_member_then_the_next_when_the_hold_expires(
    machine, training, django_capture_on_commit_callbacks
):
    owner = certified(training)
    lost_training = certified(training, username="lost")
    over_quota = certified(training, username="busy")
    first, second = certified(training, username="first"), certified(training, username="second")
    entries = [
        wait(m, machine, now=at(8, i)) for i, m in enumerate([lost_training, over_quota, first, second])
    ]
    lost_training.certifications.update(revoked_at=at(8, 30))
    # Two hours a week of this type; "busy" has them booked on another machine already.
    QuotaPolicyFactory(machine_type=machine.machine_type, max_hours_per_week=Decimal(2))
    other = MachineFactory(lab=machine.lab, machine_type=machine.machine_type)
    BookingFactory(machine=other, member=over_quota, start=at(14), end=at(16))
    no_show = BookingFactory(machine=machine, member=owner, start=at(10), end=at(12))

    # The commit hooks (with the wall clock) are not run: the scheduler's pass offers the time.
    assert lifecycle.mark_no_show(no_show.pk, at(10, 15))
    with django_capture_on_commit_callbacks(execute=True):
        assert waitlist.scheduled_pass(at(10, 15)) == 1

    offer = WaitlistOffer.objects.get()
    assert offer.entry == entries[2]
    assert (offer.start, offer.end) == (at(10, 30), at(12))
    assert offer.expires_at == at(10, 30)  # the lab's default hold, 15 minutes
    assert [m.to for m in mail.outbox] == [[first.email]]
    assert "10:30" in mail.outbox[0].body

    # Nothing happens before the hold passes, however many passes run.
    assert waitlist.scheduled_pass(at(10, 29)) == 0
    assert waitlist.scheduled_pass(at(10, 31)) == 2  # one hold expired, one offer made
    offer.refresh_from_db()
    assert offer.status == WaitlistOffer.Status.EXPIRED
    nxt = open_offer(entries[3])
    assert (nxt.start, nxt.end, nxt.expires_at) == (at(11), at(12), at(10, 46))

    booking = waitlist.accept(nxt, by=second, now=at(10, 40))
    # Within the machine's two hours' notice, and beyond its horizon: from the waitlist both are waived.
    assert (booking.member, booking.start, booking.end) == (second, at(11), at(12))
    assert booking.status == Booking.Status.CONFIRMED
    nxt.refresh_from_db()
    entries[3].refresh_from_db()
    assert (nxt.status, nxt.booking) == (WaitlistOffer.Status.ACCEPTED, booking)
    assert entries[3].status == WaitlistEntry.Status.BOOKED
    # Nobody else can take what is left, so the freed time is closed.
    waitlist.scheduled_pass(at(10, 41))
    assert FreedTime.objects.get().closed_at == at(10, 41)
    assert not WaitlistOffer.objects.filter(status=WaitlistOffer.Status.OPEN).exists()


@pytest.mark.django_db
def test_a_member_blocked_for_missed_bookings_is_skipped(machine, training):
    blocked, next_member = certified(training), certified(training)
    entry, next_entry = wait(blocked, machine), wait(next_member, machine, now=at(8, 1))
    for day in (1, 2, 3):  # three no-shows this week: the lab's default limit
        BookingFactory(
            machine=machine,
            member=blocked,
            start=at(10, day=day),
            end=at(11, day=day),
            status=Booking.Status.NO_SHOW,
            released_at=at(10, 15, day=day),
        )
    free(machine, at(14), at(15), now=at(9))

    waitlist.scheduled_pass(at(9))

    assert open_offer(entry) is None
    assert open_offer(next_entry) is not None


@pytest.mark.django_db
def test_accepting_on_an_approval_machine_books_at_once(training):
    machine = MachineFactory(required_training=training, approval_required=True, max_days_ahead=1)
    member = certified(training)
    entry = wait(member, machine, start=at(9, day=10), end=at(12, day=10))
    free(machine, at(10, day=10), at(11, day=10), now=at(8))
    waitlist.scheduled_pass(at(8))

    booking = waitlist.accept(entry, by=member, now=at(8, 5))

    assert booking.status == Booking.Status.CONFIRMED  # no approval, and six days beyond the horizon
    assert (booking.start, booking.end) == (at(10, day=10), at(11, day=10))


@pytest.mark.django_db
def test_accept_refuses_when_the_certification_was_lost_and_the_time_goes_on(machine, training):
    member, next_member = certified(training), certified(training)
    entry, next_entry = wait(member, machine), wait(next_member, machine, now=at(8, 1))
    freed_time = free(machine, at(10), at(11), now=at(9))
    offer = waitlist.offer_freed(freed_time.pk, now=at(9))
    assert offer.entry == entry
    member.certifications.update(revoked_at=at(9, 1))

    refused("not_certified", waitlist.accept, offer, by=member, now=at(9, 2))

    offer.refresh_from_db()
    assert offer.status == WaitlistOffer.Status.VOID
    assert not Booking.objects.filter(member=member).exists()
    waitlist.scheduled_pass(at(9, 3))
    assert open_offer(next_entry).freed == freed_time


@pytest.mark.django_db
def test_someone_booking_the_offered_time_first_voids_the_offer(machine, training):
    member, direct = certified(training), certified(training)
    entry = wait(member, machine)
    free(machine, at(14), at(15), now=at(9))
    waitlist.scheduled_pass(at(9))
    services.booking_create(machine=machine, member=direct, start=at(14), end=at(15), now=at(9, 1))

    refused("slot_taken", waitlist.accept, entry, by=member, now=at(9, 2))

    assert WaitlistOffer.objects.get().status == WaitlistOffer.Status.VOID
    refused("offer_not_open", waitlist.accept, entry, by=member, now=at(9, 3))


@pytest.mark.django_db
def test_over_quota_at_accept_keeps_the_offer_open_to_cure(machine, training):
    member = certified(training)
    QuotaPolicyFactory(machine_type=machine.machine_type, max_future_bookings=1)
    entry = wait(member, machine)
    free(machine, at(14), at(15), now=at(9))
    waitlist.scheduled_pass(at(9))
    other = MachineFactory(lab=machine.lab, machine_type=machine.machine_type)
    mine = services.booking_create(machine=other, member=member, start=at(16), end=at(17), now=at(9, 1))

    refused("too_many_bookings", waitlist.accept, entry, by=member, now=at(9, 2))
    assert open_offer(entry) is not None
    services.booking_cancel(booking=mine, by=member, now=at(9, 3))
    assert waitlist.accept(entry, by=member, now=at(9, 4)).start == at(14)


@pytest.mark.django_db
def test_an_expired_hold_is_not_accepted(machine, training):
    member = certified(training)
    entry = wait(member, machine)
    free(machine, at(14), at(15), now=at(9))
    waitlist.scheduled_pass(at(9))
    refused("offer_not_open", waitlist.accept, entry, by=member, now=at(9, 15))
    assert WaitlistOffer.objects.get().status == WaitlistOffer.Status.EXPIRED


@pytest.mark.django_db
def test_decline_goes_to_the_next(machine, training, django_capture_on_commit_callbacks):
    first, second = certified(training), certified(training)
    entry, next_entry = wait(first, machine), wait(second, machine, now=at(8, 1))
    free(machine, at(14), at(16), now=at(9))
    waitlist.scheduled_pass(at(9))

    with django_capture_on_commit_callbacks(execute=True):
        offer = waitlist.decline(entry, by=first, now=at(9, 5))

    assert offer.status == WaitlistOffer.Status.DECLINED
    nxt = open_offer(next_entry)
    assert (nxt.start, nxt.end, nxt.expires_at) == (at(14), at(16), at(9, 20))
    entry.refresh_from_db()
    assert entry.status == WaitlistEntry.Status.WAITING  # still waiting for other time
    refused("offer_not_open", waitlist.decline, offer, by=first, now=at(9, 6))
    refused("forbidden", waitlist.decline, nxt, by=first, now=at(9, 6))


@pytest.mark.django_db
def test_leaving_with_an_open_offer_passes_it_on(machine, training):
    first, second = certified(training), certified(training)
    entry, next_entry = wait(first, machine), wait(second, machine, now=at(8, 1))
    free(machine, at(14), at(16), now=at(9))
    waitlist.scheduled_pass(at(9))

    waitlist.leave(entry, by=first, now=at(9, 1))
    waitlist.scheduled_pass(at(9, 1))

    entry.refresh_from_db()
    assert entry.status == WaitlistEntry.Status.LEFT
    assert open_offer(next_entry) is not None
    assert waitlist.leave(entry, by=first, now=at(9, 2)).status == WaitlistEntry.Status.LEFT
    refused("forbidden", waitlist.leave, next_entry, by=first)


@pytest.mark.django_db
def test_the_offered_slot_is_cut_to_the_window_the_maximum_and_other_bookings(training):
    machine = MachineFactory(required_training=training, max_duration_minutes=90, buffer_minutes=15)
    member = certified(training)
    entry = wait(member, machine, start=at(12, 10), end=at(19))
    BookingFactory(machine=machine, start=at(13, 30), end=at(14))  # within the freed time, with its buffer
    freed_time = free(machine, at(11), at(18), now=at(9))

    assert waitlist.offered_slot(freed_time, entry, at(9)) == (at(12, 30), at(13))
    # After the other booking and its buffer (14:15 → the 14:30 boundary), up to the maximum.
    later = WaitlistEntry(start=at(13, 30), end=at(19))
    assert waitlist.offered_slot(freed_time, later, at(9)) == (at(14, 30), at(16))
    too_short = WaitlistEntry(start=at(17, 40), end=at(19))
    assert waitlist.offered_slot(freed_time, too_short, at(9)) is None


@pytest.mark.django_db
def test_a_type_wide_entry_gets_time_on_any_machine_of_the_type_in_its_lab(training):
    lab = LabFactory()
    printer_1 = MachineFactory(lab=lab, required_training=training)
    printer_2 = MachineFactory(lab=lab, required_training=training)
    laser = MachineFactory(lab=lab, machine_type=MachineType.objects.create(slug="laser", name="Laser"))
    elsewhere = MachineFactory(required_training=training)  # same type, another lab
    member = certified(training)
    entry = waitlist.join(
        member=member, lab=lab, machine_type=printer_1.machine_type, start=at(9), end=at(18), now=at(8)
    )

    for machine in (laser, elsewhere, printer_2):
        free(machine, at(14), at(15), now=at(9))
    waitlist.scheduled_pass(at(9))

    offer = open_offer(entry)
    assert offer.machine == printer_2
    assert FreedTime.objects.filter(closed_at=None).count() == 1  # the offered one; the others nobody wanted
    assert waitlist.accept(offer, by=member, now=at(9, 1)).machine == printer_2


@pytest.mark.django_db
def test_one_member_holds_one_offer_per_entry_and_the_other_freed_time_waits(machine, training):
    member = certified(training)
    entry = wait(member, machine)
    first, second = free(machine, at(10), at(11), now=at(9)), free(machine, at(15), at(16), now=at(9))
    waitlist.scheduled_pass(at(9))
    assert open_offer(entry).freed == first
    second.refresh_from_db()
    assert second.closed_at is None  # kept for the entry, which may decline the first

    waitlist.decline(entry, by=member, now=at(9, 1))
    waitlist.scheduled_pass(at(9, 1))
    assert open_offer(entry).freed == second


@pytest.mark.django_db
def test_repeated_offer_calls_make_one_offer(machine, training):
    a, b = certified(training), certified(training)
    wait(a, machine)
    wait(b, machine, now=at(8, 1))
    freed_time = free(machine, at(14), at(16), now=at(9))

    offers = [waitlist.offer_freed(freed_time.pk, now=at(9)) for _ in range(3)]
    waitlist.scheduled_pass(at(9))
    waitlist.scheduled_pass(at(9, 1))

    assert offers[0] is not None and offers[1:] == [None, None]
    assert WaitlistOffer.objects.count() == 1


@pytest.mark.django_db
def test_freed_time_whose_time_passed_is_closed_and_entries_expire(machine, training):
    member = certified(training)
    entry = wait(member, machine, start=at(9), end=at(12))
    free(machine, at(10), at(11), now=at(9))
    assert waitlist.scheduled_pass(at(10, 45)) == 0  # less than the minimum duration left
    assert FreedTime.objects.get().closed_at == at(10, 45)
    assert waitlist.scheduled_pass(at(12)) == 1
    entry.refresh_from_db()
    assert entry.status == WaitlistEntry.Status.EXPIRED


# --------------------------------------------------------------------------------------------- joining


@pytest.mark.django_db
def test_join_refusals(machine, training):
    member = certified(training)
    refused("invalid_range", wait, member, machine, start=at(12), end=at(11))
    refused("in_past", wait, member, machine, start=at(6), end=at(7))
    refused("not_certified", wait, UserFactory(), machine)
    wait(member, machine, start=at(9), end=at(12))
    refused("already_waiting", wait, member, machine, start=at(11), end=at(14))
    assert wait(member, machine, start=at(12), end=at(14)).status == WaitlistEntry.Status.WAITING
    broken = MachineFactory(bookable=False)
    refused("not_bookable", wait, member, broken)


# ------------------------------------------------------------------------------ two schedulers at once


@pytest.fixture
def pg_only():
    if connection.vendor != "postgresql":
        pytest.skip("row locks and concurrent inserts are PostgreSQL's; SQLite runs one writer at a time")


def _race(monkeypatch, freed_id: int, *, lock: bool) -> tuple[list, bool]:
    """Two threads offer one freed time at once: their results, and whether both passed every check
    before either inserted (met at the race point). The lock lets one thread check only after the
    other committed; without it they meet and the unique constraints decide."""
    barrier = threading.Barrier(2, timeout=3)
    met = []

    def race_point() -> None:
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait()
            met.append(True)

    monkeypatch.setattr(waitlist, "race_point", race_point)
    monkeypatch.setattr(waitlist, "lock_freed", lock)
    results: list = [None, None]
    start = threading.Barrier(2, timeout=30)

    def run(i: int) -> None:
        try:
            start.wait()
            results[i] = waitlist.offer_freed(freed_id, now=at(9))
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, len(met) == 2


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("lock", [True, False], ids=["locked", "constraint-only"])
def test_two_schedulers_at_once_make_one_offer(monkeypatch, pg_only, machine, training, lock):
    for i in range(2):
        wait(certified(training), machine, now=at(8, i))
    # Recorded without release()'s commit hook, which would offer it at once (autocommit here).
    freed_time = FreedTime.objects.create(
        machine=machine, start=at(14), end=at(16), reason=FreedTime.Reason.CANCELLED, created_at=at(9)
    )

    results, met = _race(monkeypatch, freed_time.pk, lock=lock)

    assert met is not lock
    assert sum(r is not None for r in results) == 1
    assert WaitlistOffer.objects.filter(freed=freed_time).count() == 1


# ------------------------------------------------------------------------------------------------- API


def client_for(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token(user)}")
    return client


def soon(days: int, hour: int) -> dt.datetime:
    """A day ``days`` ahead of the real date (API calls use the clock), Brussels time."""
    day = timezone.localdate(timezone.now(), BXL) + dt.timedelta(days=days)
    return dt.datetime.combine(day, dt.time(hour), tzinfo=BXL)


@pytest.mark.django_db
def test_api_join_list_accept(machine, training):
    member = certified(training)
    api = client_for(member)
    body = {"machine": machine.pk, "start": soon(2, 9).isoformat(), "end": soon(2, 12).isoformat()}

    created = api.post("/api/v1/waitlist/", body, format="json")
    assert created.status_code == 201, created.json()
    entry = created.json()
    assert (entry["machine"], entry["lab"], entry["status"], entry["offer"]) == (
        machine.pk,
        machine.lab.slug,
        "waiting",
        None,
    )
    assert api.post("/api/v1/waitlist/", body, format="json").json()["code"] == "already_waiting"

    freed_time = free(machine, soon(2, 10), soon(2, 11), now=timezone.now())
    assert waitlist.offer_freed(freed_time.pk, now=timezone.now()) is not None
    listed = api.get("/api/v1/waitlist/").json()
    assert listed["count"] == 1
    offer = listed["results"][0]["offer"]
    assert (offer["start"], offer["end"]) == (soon(2, 10).isoformat(), soon(2, 11).isoformat())

    accepted = api.post(f"/api/v1/waitlist/{entry['id']}/accept/")
    assert accepted.status_code == 201, accepted.json()
    assert (accepted.json()["status"], accepted.json()["start"]) == ("confirmed", soon(2, 10).isoformat())
    assert api.get(f"/api/v1/waitlist/{entry['id']}/").json()["status"] == "booked"
    again = api.post(f"/api/v1/waitlist/{entry['id']}/accept/")
    assert (again.status_code, again.json()["code"]) == (409, "offer_not_open")


@pytest.mark.django_db
def test_api_join_validation(machine, training):
    api = client_for(certified(training))
    window = {"start": soon(2, 9).isoformat(), "end": soon(2, 12).isoformat()}

    both = api.post(
        "/api/v1/waitlist/",
        {"machine": machine.pk, "machine_type": machine.machine_type.slug, "lab": machine.lab.slug, **window},
        format="json",
    )
    assert (both.status_code, both.json()["code"]) == (400, "invalid")
    neither = api.post("/api/v1/waitlist/", window, format="json")
    assert (neither.status_code, neither.json()["code"]) == (400, "invalid")
    type_without_lab = api.post(
        "/api/v1/waitlist/", {"machine_type": machine.machine_type.slug, **window}, format="json"
    )
    assert "lab" in type_without_lab.json()["fields"]
    unknown = api.post("/api/v1/waitlist/", {"machine": 10**9, **window}, format="json")
    assert "machine" in unknown.json()["fields"]
    backwards = api.post(
        "/api/v1/waitlist/",
        {"machine": machine.pk, "start": window["end"], "end": window["start"]},
        format="json",
    )
    assert (backwards.status_code, backwards.json()["code"]) == (400, "invalid_range")
    naive = api.post(
        "/api/v1/waitlist/",
        {"machine": machine.pk, "start": "2031-03-04T09:00", "end": window["end"]},
        format="json",
    )
    assert "start" in naive.json()["fields"]
    stranger = client_for(UserFactory()).post(
        "/api/v1/waitlist/", {"machine": machine.pk, **window}, format="json"
    )
    assert (stranger.status_code, stranger.json()["code"]) == (403, "not_certified")
    by_type = api.post(
        "/api/v1/waitlist/",
        {"machine_type": machine.machine_type.slug, "lab": machine.lab.slug, **window},
        format="json",
    )
    assert by_type.status_code == 201
    assert (by_type.json()["machine"], by_type.json()["machine_type"]) == (None, machine.machine_type.slug)
    assert WaitlistEntry.objects.count() == 1


@pytest.mark.django_db
def test_api_another_members_entry_is_not_found(machine, training):
    owner = certified(training)
    entry = waitlist.join(
        member=owner, lab=machine.lab, machine=machine, start=soon(2, 9), end=soon(2, 12), now=timezone.now()
    )
    free(machine, soon(2, 10), soon(2, 11), now=timezone.now())
    waitlist.scheduled_pass(timezone.now())
    other = client_for(certified(training))

    for method, suffix in [("get", ""), ("delete", ""), ("post", "accept/"), ("post", "decline/")]:
        response = getattr(other, method)(f"/api/v1/waitlist/{entry.pk}/{suffix}")
        assert (response.status_code, response.json()["code"]) == (404, "not_found"), (method, suffix)
    assert open_offer(entry) is not None
    assert client_for(owner).get("/api/v1/waitlist/").json()["count"] == 1
    assert other.get("/api/v1/waitlist/").json()["count"] == 0


@pytest.mark.django_db
def test_api_decline_and_leave(machine, training):
    member = certified(training)
    api = client_for(member)
    entry = waitlist.join(
        member=member, lab=machine.lab, machine=machine, start=soon(2, 9), end=soon(2, 12), now=timezone.now()
    )
    free(machine, soon(2, 10), soon(2, 11), now=timezone.now())
    waitlist.scheduled_pass(timezone.now())

    declined = api.post(f"/api/v1/waitlist/{entry.pk}/decline/")
    assert (declined.status_code, declined.json()["status"], declined.json()["offer"]) == (
        200,
        "waiting",
        None,
    )
    assert api.delete(f"/api/v1/waitlist/{entry.pk}/").status_code == 204
    entry.refresh_from_db()
    assert entry.status == WaitlistEntry.Status.LEFT


# ----------------------------------------------------------------------------------------------- pages


@pytest.mark.django_db
def test_the_week_page_offers_the_waitlist_on_a_taken_slot(client, machine, training):
    member = certified(training)
    BookingFactory(machine=machine, start=soon(2, 10), end=soon(2, 11))
    client.force_login(member)
    html = client.get(
        f"/labs/{machine.lab.slug}/{machine.slug}/?week={soon(2, 10).date().isoformat()}"
    ).content.decode()
    assert f"/waitlist/join/{machine.pk}/?start=" in html
    assert html.count('class="slot booked"') == 2


@pytest.mark.django_db
def test_join_page_then_offer_accepted_from_my_bookings(client, machine, training):
    member = certified(training)
    client.force_login(member)
    start = soon(2, 10)
    page = client.get(f"/waitlist/join/{machine.pk}/", {"start": start.isoformat()})
    assert page.status_code == 200
    form = {"target": "machine", "start": "x", "end": start.strftime("%Y-%m-%dT12:00")}
    assert client.post(f"/waitlist/join/{machine.pk}/", form).status_code == 200  # re-shown with the error
    form["start"] = start.strftime("%Y-%m-%dT%H:%M")
    response = client.post(f"/waitlist/join/{machine.pk}/", form)
    assert response.status_code == 302
    entry = WaitlistEntry.objects.get(member=member)
    assert (entry.machine, entry.start, entry.end) == (machine, start, soon(2, 12))

    free(machine, soon(2, 10), soon(2, 11), now=timezone.now())
    waitlist.scheduled_pass(timezone.now())
    offer = open_offer(entry)
    html = client.get("/bookings/").content.decode()
    assert f"/waitlist/offers/{offer.pk}/accept/" in html and f"/waitlist/{entry.pk}/leave/" in html

    response = client.post(f"/waitlist/offers/{offer.pk}/accept/")
    assert response.status_code == 302
    assert Booking.objects.get(member=member).start == soon(2, 10)


@pytest.mark.django_db
def test_the_schedulers_pass_offers_a_no_shows_time_in_the_same_pass(machine, training):
    from devices.scheduler import Scheduler

    entry = wait(certified(training), machine)
    BookingFactory(machine=machine, member=certified(training), start=at(10), end=at(12))

    done = Scheduler().run_pass(at(10, 15))

    assert done["no_show"] == 1 and done["waitlist"] == 1
    assert (open_offer(entry).start, open_offer(entry).end) == (at(10, 30), at(12))
