"""Members' rights: a copy of their data (JSON from the profile), and erasure into a tombstone that
leaves every report figure as it was."""

from __future__ import annotations

import datetime as dt
import io
import json
import zoneinfo

import pytest
import time_machine
from allauth.account.models import EmailAddress
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db.models import Count, Sum
from django.urls import reverse
from knox.models import AuthToken

from devices.models import Alert, Command, UsageSession
from fablab.booking.models import Booking, Kiosk, KioskPinFailure, Series, WaitlistEntry, WorkshopRegistration
from fablab.members.models import Certification, GuardianConsent, LabMembership, MemberProfile
from fablab.members.privacy import erase_member, export_member_data
from fablab.reports import metrics, rollup
from fablab.reports.models import MachineDay, MemberDay, Subject
from fablab.trainings.models import Initiative, InitiativeParticipation, Registration, TrainingSession
from tests.factories import (
    BookingFactory,
    CertificationFactory,
    LabFactory,
    MachineFactory,
    ProgrammeFactory,
    TrainingFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

BXL = zoneinfo.ZoneInfo("Europe/Brussels")
NOW = dt.datetime(2027, 6, 10, 12, tzinfo=BXL)
DAYS = (dt.date(2027, 5, 4), dt.date(2027, 5, 6))


def at(d: int, h: int, mi: int = 0) -> dt.datetime:
    return dt.datetime(2027, 5, d, h, mi, tzinfo=BXL)


@pytest.fixture(autouse=True)
def after_it_all():
    """The clock stands a month after the scene (erasure cancels only what lies ahead)."""
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def world():
    """Mia, who declared her answers, used the laser, trained, took a workshop, waited, and left
    traces everywhere; and Noah, another maker on the same machine."""
    lab = LabFactory()
    laser = MachineFactory(lab=lab)
    mia = UserFactory(username="mia", first_name="Mia", last_name="Peeters")
    noah = UserFactory(username="noah")
    MemberProfile.objects.filter(user=mia).update(
        statistics_consent=True,
        gender="woman",
        birth_year=1990,
        user_category="student",
        birth_date=dt.date(1990, 3, 1),
        badge_number="BADGE-77",
        kiosk_pin="hash",
    )
    programme = ProgrammeFactory(labs=[lab])
    young = Initiative.objects.create(programme=programme, slug="young", name="Young makers")
    InitiativeParticipation.objects.create(member=mia, initiative=young)

    used = BookingFactory(
        machine=laser,
        member=mia,
        start=at(4, 10),
        end=at(4, 12),
        status=Booking.Status.COMPLETED,
        checked_in_at=at(4, 10),
        purpose="Gift for my sister Lena",
        fault_report="nozzle clogged, Mia",
        used_minutes=60,
    )
    UsageSession.objects.create(
        machine=laser,
        started_at=at(4, 10, 15),
        ended_at=at(4, 11, 15),
        outcome="finished",
        job_name="mia_peeters_gift.gcode",
        job_id="42",
        booking=used,
        energy_wh=300,
    )
    other = BookingFactory(
        machine=laser,
        member=noah,
        start=at(4, 13),
        end=at(4, 14),
        status=Booking.Status.COMPLETED,
        checked_in_at=at(4, 13),
        fault_report="door sticks",
    )
    UsageSession.objects.create(
        machine=laser, started_at=at(4, 13), ended_at=at(4, 13, 30), outcome="finished", booking=other
    )
    Alert.objects.create(
        machine=laser,
        kind=Alert.Kind.FAULT_REPORTED,
        booking=used,
        message=f"#{used.pk} Mia Peeters: nozzle clogged, Mia | #{other.pk} noah: door sticks",
        raised_at=at(4, 12),
    )
    Command.objects.create(
        machine=laser, action="unlock", issued_by=mia, booking=used, issued_at=at(4, 10), expires_at=at(4, 11)
    )

    training = TrainingFactory()
    ts = TrainingSession.objects.create(training=training, lab=lab, start=at(6, 10), end=at(6, 12), seats=4)
    cert = CertificationFactory(member=mia, training=training)
    Registration.objects.create(
        session=ts, member=mia, status="registered", attended=True, certification=cert
    )
    series = Series.objects.create(
        kind=Series.Kind.WORKSHOP,
        lab=lab,
        rrule="FREQ=WEEKLY;COUNT=1",
        first_day=dt.date(2027, 5, 6),
        start_time=dt.time(14),
        duration=dt.timedelta(hours=2),
        title="Soldering",
    )
    WorkshopRegistration.objects.create(
        series=series, occurrence_start=at(6, 14), member=mia, attended=True, registered_at=at(1, 9)
    )
    WaitlistEntry.objects.create(
        member=mia, lab=lab, machine=laser, start=at(20, 10), end=at(20, 12), created_at=at(1, 9)
    )
    GuardianConsent.objects.create(member=mia, guardian_name="Ann Peeters", method="paper")
    LabMembership.objects.create(lab=lab, member=mia)
    kiosk = Kiosk.objects.create(lab=lab, name="Front", secret_hash="x" * 64, enrolled_at=at(1, 9))
    KioskPinFailure.objects.create(kiosk=kiosk, member=mia, at=at(3, 9))
    AuthToken.objects.create(user=mia, expiry=None)
    EmailAddress.objects.create(user=mia, email=mia.email, verified=True, primary=True)
    lab.managers.add(mia)
    return {"lab": lab, "laser": laser, "mia": mia, "noah": noah, "used": used, "other": other}


# --------------------------------------------------------------------------------------------- export


def test_the_export_holds_every_kind_of_row_with_iso_dates(world):
    data = export_member_data(world["mia"])
    json.dumps(data)  # JSON-ready as it is
    assert data["account"]["username"] == "mia"
    assert (data["profile"]["gender"], data["profile"]["birth_year"], data["profile"]["user_category"]) == (
        "woman",
        1990,
        "student",
    )
    assert [b["purpose"] for b in data["bookings"]] == ["Gift for my sister Lena"]
    assert data["bookings"][0]["start"] == "2027-05-04T08:00:00+00:00"
    assert [s["job_name"] for s in data["usage_sessions"]] == ["mia_peeters_gift.gcode"]
    assert len(data["training_registrations"]) == 1 and data["training_registrations"][0]["attended"]
    assert [w["workshop"] for w in data["workshop_registrations"]] == ["Soldering"]
    assert len(data["certifications"]) == 1
    assert len(data["waitlist_entries"]) == 1
    assert [c["action"] for c in data["commands"]] == ["unlock"]
    assert [i["initiative"] for i in data["initiatives"]] == ["Young makers"]
    assert data["guardian_consents"][0]["guardian_name"] == "Ann Peeters"
    # Nobody else's rows.
    assert "noah" not in json.dumps(data)


def test_download_my_data_is_a_json_attachment_of_the_signed_in_member_only(client, world):
    url = reverse("members:download_data")
    assert client.post(url).status_code == 302  # sign in first
    client.force_login(world["mia"])
    assert client.get(url).status_code == 405  # personal data: a POST, never a link
    response = client.post(url)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    assert response["Content-Disposition"].startswith("attachment;")
    assert response["Cache-Control"] == "no-store"
    assert json.loads(response.content)["account"]["username"] == "mia"
    assert "Download my data" in client.get(reverse("members:profile")).content.decode()


# -------------------------------------------------------------------------------------------- erasure


def _totals() -> dict:
    machine = MachineDay.objects.aggregate(
        used=Sum("used_h"), booked=Sum("booked_h"), kept=Sum("bookings_kept"), energy=Sum("energy_kwh")
    )
    people = MemberDay.objects.values("kind").annotate(n=Count("subject", distinct=True)).order_by("kind")
    return {**machine, "people": {row["kind"]: row["n"] for row in people}}


def test_erasure_leaves_a_tombstone_everywhere(world):
    mia, used = world["mia"], world["used"]
    erase_member(mia, by=None)

    mia.refresh_from_db()
    assert mia.username.startswith("erased-") and mia.username != "erased-"
    assert (mia.first_name, mia.last_name, mia.email) == ("", "", "")
    assert not mia.has_usable_password() and not mia.is_active
    assert not mia.managed_labs.exists()
    profile = MemberProfile.objects.get(user=mia)
    assert (profile.statistics_consent, profile.gender, profile.birth_year, profile.user_category) == (
        False,
        "",
        None,
        "",
    )
    assert (profile.birth_date, profile.badge_number, profile.kiosk_pin) == (None, None, "")

    # Kept, pointing at the tombstone: nothing cascaded away.
    used.refresh_from_db()
    assert used.member_id == mia.pk and (used.purpose, used.fault_report) == ("", "")
    session = UsageSession.objects.get(booking=used)
    assert (session.job_name, session.job_id, session.energy_wh) == ("", "", 300)
    assert Certification.objects.filter(member=mia).count() == 1
    assert Registration.objects.filter(member=mia, attended=True).count() == 1
    assert WorkshopRegistration.objects.filter(member=mia, attended=True).count() == 1
    assert Command.objects.filter(issued_by=mia).count() == 1
    # Her line of the fault alert is gone, Noah's stays.
    assert Alert.objects.get().message == f"#{world['other'].pk} noah: door sticks"
    # Personal-only rows deleted.
    for model, field in [
        (AuthToken, "user"),
        (EmailAddress, "user"),
        (WaitlistEntry, "member"),
        (GuardianConsent, "member"),
        (KioskPinFailure, "member"),
        (InitiativeParticipation, "member"),
        (LabMembership, "member"),
    ]:
        assert not model.objects.filter(**{field: mia}).exists(), model
    # Noah is untouched.
    assert get_user_model().objects.get(username="noah").is_active
    assert Booking.objects.get(pk=world["other"].pk).fault_report == "door sticks"


def test_erasing_twice_changes_nothing_the_second_time(world):
    assert erase_member(world["mia"]) is True
    name = get_user_model().objects.get(pk=world["mia"].pk).username
    assert erase_member(world["mia"]) is False
    assert get_user_model().objects.get(pk=world["mia"].pk).username == name


def test_erasure_changes_no_rollup_total_and_withdraws_the_answers(world):
    rollup.rebuild(*DAYS, now=NOW)
    subject = Subject.objects.get(member=world["mia"])
    assert set(MemberDay.objects.filter(subject=subject).values_list("gender", flat=True)) == {"woman"}
    before = _totals()
    assert before["people"] == {"training": 1, "use": 2, "workshop": 1}

    erase_member(world["mia"])

    assert _totals() == before
    assert set(
        MemberDay.objects.filter(subject=subject).values_list("gender", "age_band", "user_category")
    ) == {("", "", "")}
    assert all(
        r == []
        for r in MemberDay.objects.filter(subject=subject).values_list("declared_initiatives", flat=True)
    )
    # A rollup rebuilt after the erasure counts the tombstone under the same pseudonym: same totals.
    rollup.rebuild(*DAYS, now=NOW)
    assert _totals() == before
    assert set(MemberDay.objects.filter(subject=subject).values_list("gender", flat=True)) == {""}


def test_erasure_changes_no_report_total(world):
    rollup.rebuild(*DAYS, now=NOW)

    def totals():
        cells = metrics.year_cells(2027, [world["lab"]], today=NOW.date())
        return {
            (c.period, c.lab, c.machine_type, c.machine, c.metric): c.value
            for c in cells
            if not c.dimension or c.dimension not in ("gender", "age_band", "user_category", "initiative")
        }

    before = totals()
    assert before
    erase_member(world["mia"])
    rollup.rebuild(*DAYS, now=NOW)
    assert totals() == before


def test_a_member_erases_themselves_with_their_password(client, world):
    mia = world["mia"]
    client.force_login(mia)
    url = reverse("members:delete_account")
    html = client.get(reverse("members:profile")).content.decode()
    assert "This cannot be undone" in html

    wrong = client.post(url, {"password": "nope", "confirm": "on"})
    assert wrong.status_code == 400
    unticked = client.post(url, {"password": "pw-test-1234"})
    assert unticked.status_code == 400
    assert get_user_model().objects.get(pk=mia.pk).username == "mia"

    response = client.post(url, {"password": "pw-test-1234", "confirm": "on"})
    assert response.status_code == 302
    assert "_auth_user_id" not in client.session
    assert get_user_model().objects.get(pk=mia.pk).username.startswith("erased-")
    assert not client.login(username="mia", password="pw-test-1234")


def test_the_erase_member_command(world):
    with pytest.raises(CommandError):
        call_command("erase_member", "nobody", "--yes")
    out = io.StringIO()
    call_command("erase_member", "mia", "--yes", stdout=out)
    assert "tombstone erased-" in out.getvalue()
    assert not get_user_model().objects.filter(username="mia").exists()


def test_an_administrator_erases_from_the_admin_and_never_sees_the_answers(client, world):
    client.force_login(UserFactory(is_superuser=True, is_staff=True))
    profile = MemberProfile.objects.get(user=world["mia"])
    html = client.get(reverse("admin:members_memberprofile_change", args=[profile.pk])).content.decode()
    assert 'name="badge_number"' in html
    assert 'name="gender"' not in html and 'name="birth_year"' not in html
    client.post(
        reverse("admin:members_memberprofile_changelist"),
        {"action": "erase_members", "_selected_action": [profile.pk]},
    )
    assert get_user_model().objects.get(pk=world["mia"].pk).username.startswith("erased-")


def test_erasure_gives_back_what_lies_ahead(world):
    laser, mia = world["laser"], world["mia"]
    ahead = BookingFactory(
        machine=laser, member=mia, start=NOW + dt.timedelta(days=2), end=NOW + dt.timedelta(days=2, hours=1)
    )
    session = TrainingSession.objects.create(
        training=TrainingFactory(),
        lab=world["lab"],
        start=NOW + dt.timedelta(days=3),
        end=NOW + dt.timedelta(days=3, hours=2),
        seats=1,
    )
    seat = Registration.objects.create(session=session, member=mia, status="registered")
    waiting = Registration.objects.create(session=session, member=world["noah"], status="waitlisted")

    erase_member(mia)

    ahead.refresh_from_db()
    assert ahead.status == Booking.Status.CANCELLED and ahead.member_id == mia.pk
    seat.refresh_from_db()
    waiting.refresh_from_db()
    assert (seat.status, waiting.status) == ("cancelled", "registered")  # the seat went to Noah
    # The past is as it was.
    assert Booking.objects.get(pk=world["used"].pk).status == Booking.Status.COMPLETED
