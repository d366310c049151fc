"""The board's bookings: who sees which booking's state, no-shows released, overruns, the interlock,
and a booking change pushed to every board as that viewer's own card."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from django.utils import timezone

from devices import board as board_mod
from devices.models import Interlock
from fablab.booking import lifecycle
from fablab.booking.models import Booking
from tests.devices.board_fixtures import in_memory_layer, make_board  # noqa: F401
from tests.devices.test_consumers import TIMEOUT, _open
from tests.factories import BookingFactory, MachineFactory, ProgrammeFactory, UserFactory

pytestmark = pytest.mark.django_db


def cards(user, lab, now=None) -> dict[str, dict]:
    viewer = board_mod.viewer_for(user, lab)
    return {c["machine"]: c for c in board_mod.lab_cards(lab, viewer, now=now)}


@pytest.fixture
def scene():
    now = timezone.now()
    b = make_board(now)
    b["now"] = now
    Booking.objects.filter(pk=b["current"].pk).update(
        status=Booking.Status.CHECKED_IN, checked_in_at=now - dt.timedelta(minutes=25), check_in_via="kiosk"
    )
    return b


def test_the_holder_sees_their_own_check_in(scene):
    mine = cards(scene["maker_b"], scene["lab"])["printer-1"]["booking"]
    assert mine["mine"] is True
    assert mine["status"] == "checked_in"
    assert mine["checked_in_at"] == (scene["now"] - dt.timedelta(minutes=25)).isoformat()
    assert mine["holder"] is None


def test_another_maker_sees_only_booked_with_its_times(scene):
    other = cards(scene["maker_a"], scene["lab"])["printer-1"]["booking"]
    assert other["status"] == "booked"
    assert other["checked_in_at"] is None
    assert other["holder"] is None
    assert other["end"] == scene["current"].end.isoformat()


def test_an_officer_sees_no_names(scene):
    officer = UserFactory(username="officer-o", first_name="Olivier")
    ProgrammeFactory(labs=[scene["lab"]], officers=[officer])
    text = json.dumps(cards(officer, scene["lab"]))
    for name in ("Karim", "Anouk", "maker-b", "maker-a", "karim-bracket"):
        assert name not in text
    assert cards(officer, scene["lab"])["printer-1"]["booking"]["status"] == "booked"


def test_a_manager_sees_everything(scene):
    seen = cards(scene["manager"], scene["lab"])
    assert seen["printer-1"]["booking"]["holder"] == "Karim Other"
    assert seen["printer-1"]["booking"]["status"] == "checked_in"
    assert seen["laser-1"]["next_booking"]["holder"] == "Anouk Maker"


def test_a_released_no_show_frees_the_machine_and_says_so(scene):
    now = scene["now"]
    no_show = BookingFactory(
        machine=scene["laser"],
        member=scene["maker_a"],
        start=now - dt.timedelta(minutes=20),
        end=now + dt.timedelta(minutes=40),
        status=Booking.Status.NO_SHOW,
        released_at=now - dt.timedelta(minutes=5),
    )
    own = cards(scene["maker_a"], scene["lab"])["laser-1"]["booking"]
    assert own["status"] == "no_show"
    assert own["released_at"] == no_show.released_at.isoformat()
    other = cards(scene["maker_b"], scene["lab"])["laser-1"]["booking"]
    assert other["status"] == "released"
    assert other["released_at"] == no_show.released_at.isoformat()


def test_a_checked_in_booking_past_its_end_stays_on_the_card_as_an_overrun(scene):
    later = scene["current"].end + dt.timedelta(minutes=12)
    shown = cards(scene["manager"], scene["lab"], now=later)["printer-1"]["booking"]
    assert shown["status"] == "checked_in"
    assert shown["end"] == scene["current"].end.isoformat()
    # Completed, it is no longer the machine's.
    Booking.objects.filter(pk=scene["current"].pk).update(status=Booking.Status.COMPLETED, completed_at=later)
    assert cards(scene["manager"], scene["lab"], now=later)["printer-1"]["booking"] is None


def test_the_overrunning_holder_still_holds_the_machine_on_the_card_and_in_the_live_frames(scene):
    later = scene["current"].end + dt.timedelta(minutes=12)
    card = cards(scene["maker_b"], scene["lab"], now=later)["printer-1"]
    assert board_mod.holds(card)
    assert card["job"]["name"] == "karim-bracket.gcode"
    # The live frames follow the same rule (the consumer re-reads it every minute).
    assert board_mod.machines_held_by(scene["maker_b"].pk, scene["lab"], now=later) == {"printer-1"}
    assert board_mod.machines_held_by(scene["maker_a"].pk, scene["lab"], now=later) == set()


def test_a_released_no_show_does_not_hold_the_machine_nor_see_the_next_users_job(scene):
    Booking.objects.filter(pk=scene["current"].pk).update(
        status=Booking.Status.NO_SHOW, checked_in_at=None, released_at=scene["now"]
    )
    card = cards(scene["maker_b"], scene["lab"])["printer-1"]
    assert card["booking"]["status"] == "no_show" and card["booking"]["mine"] is True
    assert not board_mod.holds(card)
    assert card["job"]["name"] is None  # somebody else's job on the released machine
    assert board_mod.machines_held_by(scene["maker_b"].pk, scene["lab"]) == set()


def test_a_training_session_shows_its_kind_and_title_to_everyone(scene):
    now = scene["now"]
    BookingFactory(
        machine=scene["laser"],
        member=None,
        kind=Booking.Kind.TRAINING,
        title="Laser safety, group 3",
        start=now - dt.timedelta(minutes=5),
        end=now + dt.timedelta(hours=1),
    )
    seen = cards(scene["maker_a"], scene["lab"])["laser-1"]["booking"]
    assert (seen["kind"], seen["title"], seen["holder"]) == ("training", "Laser safety, group 3", None)


def test_an_interlocked_machine_shows_what_the_server_wants(scene):
    assert cards(scene["manager"], scene["lab"])["laser-1"]["interlock"] is None
    Interlock.objects.create(machine=scene["laser"], wanted=False)
    assert cards(scene["maker_a"], scene["lab"])["laser-1"]["interlock"] == {"wanted": False}
    Interlock.objects.filter(machine=scene["laser"]).update(wanted=True)
    assert cards(scene["maker_a"], scene["lab"])["laser-1"]["interlock"] == {"wanted": True}


def _page(client, user, lab) -> tuple[str, dict]:
    client.force_login(user)
    page = client.get(f"/labs/{lab.slug}/board/").content.decode()
    cards_html, script = page.split('id="board-strings" type="application/json">')
    return cards_html, json.loads(script.split("</script>")[0])


def test_the_page_renders_the_check_in_for_its_holder_only(client, scene):
    html, strings = _page(client, scene["maker_b"], scene["lab"])
    assert set(strings["booking"]) >= {"checked_in_at", "no_show", "time_left", "overrun", "locked"}
    assert "checked in at" in html
    html, _strings = _page(client, scene["maker_a"], scene["lab"])
    assert "checked in at" not in html


def test_an_untitled_training_is_named_by_its_translated_kind_on_the_page(client, scene):
    BookingFactory(
        machine=scene["laser"],
        member=None,
        kind=Booking.Kind.TRAINING,
        title="",
        start=scene["now"] - dt.timedelta(minutes=5),
        end=scene["now"] + dt.timedelta(hours=1),
    )
    html, _strings = _page(client, scene["maker_a"], scene["lab"])
    # The card's first paint, before board.js repaints it (the page's strings also carry the labels).
    assert "<dd>Training session ·" in html
    assert "<dd>training ·" not in html


@pytest.mark.django_db(transaction=True)
def test_a_check_in_reaches_each_board_as_its_viewers_card(in_memory_layer):  # noqa: F811
    now = timezone.now()
    b = make_board(now)
    Booking.objects.filter(pk=b["upcoming"].pk).update(
        start=now + dt.timedelta(minutes=5), end=now + dt.timedelta(hours=1)
    )

    def check_in():
        booking = Booking.objects.get(pk=b["upcoming"].pk)
        lifecycle.check_in(booking=booking, by=b["maker_a"], via="page", now=now)

    async def scenario():
        watchers = {name: await _open(b[name]) for name in ("manager", "maker_a", "maker_b")}
        for comm in watchers.values():
            assert (await comm.receive_json_from(timeout=TIMEOUT))["type"] == "snapshot"
        await database_sync_to_async(check_in)()
        frames = {name: await comm.receive_json_from(timeout=TIMEOUT) for name, comm in watchers.items()}
        for comm in watchers.values():
            await comm.disconnect()
        return frames

    frames = async_to_sync(scenario)()
    for frame in frames.values():
        assert frame["machine"] == "laser-1"
    # Still the next booking (it starts in 5 minutes), now checked in: its holder sees it.
    assert frames["maker_a"]["next_booking"]["status"] == "checked_in"
    assert frames["maker_a"]["next_booking"]["mine"] is True
    assert frames["maker_b"]["next_booking"]["status"] == "booked"
    assert frames["manager"]["next_booking"]["holder"] == "Anouk Maker"


def test_the_lab_page_shows_the_weeks_hours_and_reads_the_states_from_the_public_json(client, scene):
    lab = scene["lab"]
    page = client.get(f"/labs/{lab.slug}/").content.decode()
    assert "Opening hours" in page
    assert f"/labs/{lab.slug}/states.json" in page
    states = client.get(f"/labs/{lab.slug}/states.json").json()  # anonymous: the lab page is public
    assert states["machines"] == {"printer-1": "running", "laser-1": "idle"}
    assert states["labels"]["running"] == "Running"
    text = json.dumps(states)
    for private in ("Karim", "karim-bracket", "Anouk"):
        assert private not in text


def test_a_machine_that_never_reported_is_offline_on_the_lab_page(client, scene):
    MachineFactory(lab=scene["lab"], slug="router-1", name="Router 1")
    states = client.get(f"/labs/{scene['lab'].slug}/states.json").json()
    assert states["machines"] == {"printer-1": "running", "laser-1": "idle", "router-1": "offline"}
