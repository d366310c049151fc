"""A board that drops nothing: after any burst, every connected viewer ends on each machine's final state.

The statuses go through the hub's own applier (``devices.status.apply_statuses``)
and its pusher thread, to WebSocket consumers on the in-memory layer and on a
real Redis channel layer — once with the project's settings and once with a
capacity of 5 messages, so that the layer does lose messages and the
consumers' repair (a fresh snapshot on a gap in the sender's sequence) is what
brings the viewers to the final state. One viewer's socket is blocked during
the whole burst: it must come out with each machine's latest state, not a
backlog. No wall-clock assertion: the test waits for the viewers to go quiet.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Iterator

import pytest
from asgiref.sync import async_to_sync
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from devices import board, live, machines
from devices import status as live_status
from devices.models import MachineStatus
from devices.routing import websocket_urlpatterns
from fablab.booking.models import Booking
from firmware_bridge import protocol
from tests.devices.board_fixtures import redis_server  # noqa: F401
from tests.devices.conftest import make_machine
from tests.factories import BookingFactory, LabFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

LAB = "burst-lab"
MACHINES = 50
CHANGES = 40
MANAGERS = 5
MAKERS = 15  # the first five hold a booking of machines 0-4 (they see their own job names)
#: How long a viewer must stay silent to count as quiet, and the longest any wait may take.
QUIET_S = 0.5
TIMEOUT = 120.0


@pytest.fixture(params=["in-memory", "redis", "redis-capacity-5"])
def layer(request, settings, tmp_path) -> Iterator[str]:
    """The channel layer of the test: in-memory, Redis as configured, or Redis that refuses a lot."""
    from channels.layers import channel_layers

    from fablab.settings import redis_channel_layer

    server = None
    if request.param == "in-memory":
        config = {"BACKEND": "channels.layers.InMemoryChannelLayer"}
    else:
        server = request.getfixturevalue("redis_server")
        config = redis_channel_layer(server.url)
        if request.param == "redis-capacity-5":
            config["CONFIG"]["capacity"] = 5
    settings.CHANNEL_LAYERS = {"default": config}
    channel_layers.backends.clear()
    yield request.param
    assert live.flush(timeout=30)
    channel_layers.backends.clear()


class BlockedSocket(asyncio.Queue):
    """A browser that reads nothing: once the snapshot is out, every send waits until :meth:`open`."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.sends = 0

    async def put(self, item) -> None:
        if item.get("type") == "websocket.send":
            self.sends += 1
            if self.sends > 1:
                await self.gate.wait()
        await super().put(item)

    def open(self) -> None:
        self.gate.set()


def _status(state: str, ts: int, job: str | None, progress: float) -> protocol.Status:
    return protocol.Status(
        state=state,
        enabled=True,
        bridge="bridge-1",
        adapter="octoprint",
        ts=ts,
        job=protocol.Job(id=job, name=f"{job}.gcode", started_ts=ts, progress_pct=progress) if job else None,
    )


def _change(machine: int, change: int, t0: int) -> protocol.Status:
    """Change ``change`` of machine ``machine``: states cycle, progress and ts move on."""
    state = (protocol.RUNNING, protocol.PAUSED, protocol.RUNNING, protocol.IDLE)[(machine + change) % 4]
    job = None if state == protocol.IDLE else f"job-{machine:02d}"
    return _status(state, t0 + change * 10, job, float(change))


def _make_lab():
    now = timezone.now()
    lab = LabFactory(slug=LAB, name="Burst lab")
    slugs = [f"m-{i:02d}" for i in range(MACHINES)]
    made = [make_machine(lab, slug=slug) for slug in slugs]
    managers = [UserFactory(username=f"manager-{i}") for i in range(MANAGERS)]
    lab.managers.add(*managers)
    makers = [UserFactory(username=f"maker-{i}") for i in range(MAKERS)]
    for i, maker in enumerate(makers[:5]):
        BookingFactory(
            machine=made[i],
            member=maker,
            start=now - dt.timedelta(minutes=5),
            end=now + dt.timedelta(hours=2),
        )
    return lab, slugs, managers + makers


def _burst(slugs: list[str], t0: int) -> None:
    """What the hub does with a burst: batches of statuses applied, each applied one pushed."""
    from django.db import connection

    try:
        index = machines.MachineIndex()
        index.reload()
        infos = [index.get(LAB, slug) for slug in slugs]
        for change in range(CHANGES):
            # Batches of various sizes, as the hub's inbox gives them.
            for start in range(0, MACHINES, 7 + change % 13):
                stop = min(MACHINES, start + 7 + change % 13)
                live_status.apply_statuses([(infos[i], _change(i, change, t0)) for i in range(start, stop)])
        assert live.flush(timeout=TIMEOUT)
    finally:
        connection.close()


def _expected(lab, users) -> dict[int, dict[str, dict]]:
    """Each viewer's board as the database has it now: what they must end on."""
    return {u.pk: {c["machine"]: c for c in board.lab_cards(lab, board.viewer_for(u, lab))} for u in users}


FIELDS = ("state", "job", "error", "enabled", "online", "v")


class View:
    """A viewer's board as the browser builds it from the frames (the snapshot replaces, frames merge)."""

    def __init__(self) -> None:
        self.machines: dict[str, dict] = {}
        self.frames = 0
        self.went_back: list[tuple[str, list, list]] = []

    def apply(self, frame: dict) -> None:
        if frame["type"] == "snapshot":
            self.machines = {m["machine"]: m for m in frame["machines"]}
        elif frame["type"] == "machine":
            self.frames += 1
            known = self.machines.get(frame["machine"], {})
            if known.get("v") and frame["v"] < known["v"]:
                self.went_back.append((frame["machine"], frame["v"], known["v"]))
            self.machines[frame["machine"]] = {**known, **frame}

    def shows(self, expected: dict[str, dict]) -> bool:
        return all(
            {f: self.machines.get(slug, {}).get(f) for f in FIELDS} == {f: card.get(f) for f in FIELDS}
            for slug, card in expected.items()
        )


async def _take(comm: WebsocketCommunicator, view: View, quiet: float) -> bool:
    """Apply what ``comm`` received until it is quiet for ``quiet`` seconds; False if it got nothing."""
    got = False
    while not await comm.receive_nothing(timeout=quiet, interval=0.005):
        view.apply(await comm.receive_json_from(timeout=TIMEOUT))
        got = True
    return got


async def _settle(comm: WebsocketCommunicator, view: View, expected: dict[str, dict]) -> None:
    """Read until the view shows ``expected`` (or TIMEOUT), then until the socket is quiet."""
    deadline = time.monotonic() + TIMEOUT
    while not view.shows(expected) and time.monotonic() < deadline:
        await _take(comm, view, 0.05)
    await _take(comm, view, QUIET_S)


def test_every_viewer_ends_on_each_machines_final_state_after_a_burst(layer, caplog):
    caplog.set_level("INFO", logger="channels_redis.core")
    stall = layer == "redis-capacity-5"
    lab, slugs, users = _make_lab()
    slow_user = users[MANAGERS + 1]  # a maker who holds machine 1 (running at the end)
    t0 = int(time.time() * 1000) - 60_000

    async def scenario():
        comms: dict[int, WebsocketCommunicator] = {}
        for user in users:
            comm = WebsocketCommunicator(URLRouter(websocket_urlpatterns), f"/ws/labs/{LAB}/")
            comm.scope["user"] = user
            if user is slow_user:
                comm._output_queue = BlockedSocket()
            connected, _ = await comm.connect(timeout=TIMEOUT)
            assert connected
            comms[user.pk] = comm
        views = {pk: View() for pk in comms}
        for pk, comm in comms.items():
            views[pk].apply(await comm.receive_json_from(timeout=TIMEOUT))
            assert views[pk].machines.keys() == set(slugs)

        burst = asyncio.get_running_loop().run_in_executor(None, _burst, slugs, t0)
        readers = [pk for pk in comms if pk != slow_user.pk]
        while not burst.done():  # the others read while the hub pushes
            await asyncio.gather(*(_take(comms[pk], views[pk], 0.01) for pk in readers))
            if stall:  # the web process stalls (a long request, a GC pause): messages pile up in Redis
                time.sleep(0.3)
        await burst
        from channels.db import database_sync_to_async

        expected = await database_sync_to_async(_expected)(lab, users)
        await asyncio.gather(*(_settle(comms[pk], views[pk], expected[pk]) for pk in readers))
        # Only now does the blocked browser read: what waited for it is one frame per machine at most.
        slow = comms[slow_user.pk]
        frames_before = views[slow_user.pk].frames
        slow._output_queue.open()
        await _settle(slow, views[slow_user.pk], expected[slow_user.pk])
        for comm in comms.values():
            await comm.disconnect()
        return expected, views, views[slow_user.pk].frames - frames_before

    expected, views, slow_frames = async_to_sync(scenario)()

    if stall:  # the layer did refuse messages: the repair is what is tested here
        assert "over capacity" in caplog.text

    final = expected[users[0].pk]
    assert {final[s]["state"] for s in slugs} == {protocol.RUNNING, protocol.PAUSED, protocol.IDLE}
    assert all(final[s]["job"] is None or final[s]["job"]["progress_pct"] == CHANGES - 1 for s in slugs)
    for user in users:
        view = views[user.pk]
        for slug in slugs:
            shown = {f: view.machines[slug].get(f) for f in FIELDS}
            assert shown == {f: expected[user.pk][slug].get(f) for f in FIELDS}, (user.username, slug)
        assert view.went_back == [], user.username
    # A maker sees their own job's name, and no one else's.
    assert views[slow_user.pk].machines["m-01"]["job"]["name"] == "job-01.gcode"
    assert views[slow_user.pk].machines["m-02"]["job"]["name"] is None
    assert views[users[0].pk].machines["m-02"]["job"]["name"] == "job-02.gcode"
    # The blocked viewer was not sent a backlog: the frame it was stuck on, then the latest per machine,
    # and the card of each machine whose booking changed in the burst (its job checked the booking in).
    booking_changes = Booking.objects.filter(machine__lab=lab, status=Booking.Status.CHECKED_IN).count()
    assert booking_changes == 5
    assert slow_frames <= 1 + MACHINES + booking_changes
    # Everyone else kept up and saw the burst go by (coalescing is for those who fall behind).
    assert stall or min(views[u.pk].frames for u in users if u is not slow_user) > MACHINES


# ---------------------------------------------------------------- versions and repairs, one by one


@pytest.fixture
def in_memory(settings) -> Iterator[None]:
    from channels.layers import channel_layers

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


def _printer_lab():
    lab = LabFactory(slug=LAB)
    printer = make_machine(lab, slug="printer")
    MachineStatus.objects.create(
        machine=printer, state="idle", online=True, enabled=True, status_ts=1_800_000_000_000
    )
    manager = UserFactory(username="manager")
    lab.managers.add(manager)
    return manager


async def _watch(user) -> WebsocketCommunicator:
    comm = WebsocketCommunicator(URLRouter(websocket_urlpatterns), f"/ws/labs/{LAB}/")
    comm.scope["user"] = user
    connected, _ = await comm.connect(timeout=TIMEOUT)
    assert connected
    return comm


async def _group_send(message: dict) -> None:
    from channels.layers import get_channel_layer

    await get_channel_layer().group_send(live.group_name(LAB), message)


def _frame(state: str, v: list[int]) -> dict:
    return {"type": "machine", "machine": "printer", "state": state, "ts": v[0], "v": v}


def test_an_older_frame_never_replaces_a_newer_one(in_memory):
    manager = _printer_lab()
    base = 1_800_000_000_000

    async def scenario():
        comm = await _watch(manager)
        snapshot = await comm.receive_json_from(timeout=TIMEOUT)
        got = []
        # Older than the snapshot: never sent.
        await _group_send({"type": "board.frames", "frames": [_frame("error", [base - 1, 0])]})
        # A newer one, then an older one in the same message and in the next one.
        await _group_send(
            {
                "type": "board.frames",
                "frames": [_frame("paused", [base + 20, 5]), _frame("running", [base + 10, 9])],
            }
        )
        await _group_send({"type": "board.frame", "frame": _frame("running", [base + 20, 4])})
        # The same version again (e.g. an alert raised) is not older: it is sent.
        await _group_send(
            {"type": "board.frame", "frame": {**_frame("paused", [base + 20, 5]), "alerts": [1]}}
        )
        while not await comm.receive_nothing(timeout=QUIET_S):
            got.append(await comm.receive_json_from(timeout=TIMEOUT))
        await comm.disconnect()
        return snapshot, got

    snapshot, got = async_to_sync(scenario)()
    assert snapshot["machines"][0]["v"] == [base, 0]
    assert [(f["state"], f["v"]) for f in got] == [("paused", [base + 20, 5]), ("paused", [base + 20, 5])]
    assert got[-1]["alerts"] == [1]


def test_the_hubs_pusher_keeps_the_newest_frame_per_machine_when_it_falls_behind():
    pusher = live._Pusher()
    pusher._thread = type("Alive", (), {"is_alive": staticmethod(lambda: True)})()  # no thread: nothing sent
    pusher._pid = __import__("os").getpid()
    pusher.max_waiting = 3
    pusher.submit("lab.a", {"machine": "p", "v": [3, 0], "state": "paused"})
    pusher.submit("lab.a", {"machine": "q", "v": [1, 0], "state": "idle"})
    pusher.submit("lab.a", {"machine": "p", "v": [2, 0], "state": "running"})  # older, arrived later
    pusher.submit("lab.b", {"machine": "p", "v": [1, 0], "state": "idle"})  # another lab's "p"
    pusher.submit("lab.a", {"machine": "q", "v": [2, 0], "state": "running"})
    waiting = [(g, f["machine"], f["state"]) for g, f in pusher._queue]
    assert waiting == [("lab.a", "p", "paused"), ("lab.b", "p", "idle"), ("lab.a", "q", "running")]


def test_a_lost_message_gets_the_viewer_a_fresh_snapshot(in_memory, monkeypatch):
    from devices import consumers

    monkeypatch.setattr(consumers, "REPAIR_MIN_S", 0.0)
    manager = _printer_lab()

    async def scenario():
        comm = await _watch(manager)
        await comm.receive_json_from(timeout=TIMEOUT)
        frame = _frame("running", [1_800_000_000_001, 0])
        await _group_send({"type": "board.frames", "frames": [frame], "origin": "hub-1", "seq": 7})
        first = await comm.receive_json_from(timeout=TIMEOUT)
        # seq 8 never came: the frame of seq 9 is sent, then the snapshot that repairs what 8 carried.
        frame = _frame("paused", [1_800_000_000_003, 0])
        await _group_send({"type": "board.frames", "frames": [frame], "origin": "hub-1", "seq": 9})
        second = await comm.receive_json_from(timeout=TIMEOUT)
        repair = await comm.receive_json_from(timeout=TIMEOUT)
        # Another sender's sequence is its own; a gap-free one gets no snapshot.
        await _group_send({"type": "board.frames", "frames": [frame], "origin": "hub-2", "seq": 1})
        await _group_send({"type": "board.frames", "frames": [frame], "origin": "hub-2", "seq": 2})
        await _group_send({"type": "board.frames", "frames": [frame], "origin": "hub-1", "seq": 10})
        rest = []
        while not await comm.receive_nothing(timeout=QUIET_S):
            rest.append(await comm.receive_json_from(timeout=TIMEOUT))
        await comm.disconnect()
        return first, second, repair, rest

    first, second, repair, rest = async_to_sync(scenario)()
    assert (first["state"], second["state"]) == ("running", "paused")
    assert repair["type"] == "snapshot"
    assert all(f["type"] == "machine" for f in rest)


def test_the_loss_of_a_bursts_last_message_is_noticed_by_the_mark_after_it(in_memory, monkeypatch):
    from devices import consumers

    monkeypatch.setattr(consumers, "REPAIR_MIN_S", 0.0)
    manager = _printer_lab()

    async def scenario():
        comm = await _watch(manager)
        await comm.receive_json_from(timeout=TIMEOUT)
        frame = _frame("running", [1_800_000_000_001, 0])
        await _group_send({"type": "board.frames", "frames": [frame], "origin": "hub-1", "seq": 1})
        await comm.receive_json_from(timeout=TIMEOUT)
        await _group_send({"type": "board.mark", "origin": "hub-1", "seq": 1})  # nothing lost
        nothing = await comm.receive_nothing(timeout=QUIET_S)
        await _group_send({"type": "board.mark", "origin": "hub-1", "seq": 2})  # seq 2 was lost
        repair = await comm.receive_json_from(timeout=TIMEOUT)
        await comm.disconnect()
        return nothing, repair

    nothing, repair = async_to_sync(scenario)()
    assert nothing
    assert repair["type"] == "snapshot"


def _marked_after_last_frames(seen: list[tuple[str, str, int]]) -> bool:
    """Whether the sender of the last ``board.frames`` has marked its quiet since."""
    frames = [i for i, (_, kind, _) in enumerate(seen) if kind == "board.frames"]
    if not frames:
        return False
    origin = seen[frames[-1]][0]
    return any(o == origin and kind == "board.mark" for o, kind, _ in seen[frames[-1] + 1 :])


def test_the_pusher_marks_each_lab_after_its_last_message(in_memory, monkeypatch):
    """The real pusher's messages carry a sequence, and a mark repeats its last value after a burst."""
    from devices import consumers

    manager = _printer_lab()
    seen: list[tuple[str, str, int]] = []
    original = consumers.BoardConsumer._note_seq

    def note(self, event, *, is_mark):
        seen.append((event.get("origin"), event["type"], event["seq"]))
        return original(self, event, is_mark=is_mark)

    monkeypatch.setattr(consumers.BoardConsumer, "_note_seq", note)
    monkeypatch.setattr(live._Pusher, "mark_after_s", (0.05,))

    def push_twice():
        status = MachineStatus.objects.select_related("machine__lab").get(machine__slug="printer")
        for ts in (1_800_000_000_001, 1_800_000_000_002):
            status.status_ts = ts
            live.push_status(status, ts=ts)
            assert live.flush(timeout=TIMEOUT)

    async def scenario():
        from channels.db import database_sync_to_async

        comm = await _watch(manager)
        await comm.receive_json_from(timeout=TIMEOUT)
        await database_sync_to_async(push_twice)()
        frames = [await comm.receive_json_from(timeout=TIMEOUT) for _ in range(2)]
        deadline = time.monotonic() + TIMEOUT
        # The mark that follows the last message (a slow machine may also mark the quiet between the two).
        while not _marked_after_last_frames(seen) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await comm.disconnect()
        return frames

    frames = async_to_sync(scenario)()
    assert [f["ts"] for f in frames] == [1_800_000_000_001, 1_800_000_000_002]
    # Only this test's pusher (a sender of an earlier test may still mark its own quiet in the group).
    origin = next(o for o, kind, _ in seen if kind == "board.frames")
    ours = [(kind, seq) for o, kind, seq in seen if o == origin]
    sent = [seq for kind, seq in ours if kind == "board.frames"]
    assert len(sent) == 2 and sent[1] == sent[0] + 1
    # Every mark repeats the sequence of the message before it, and one follows the last message.
    last = None
    for kind, seq in ours:
        if kind == "board.mark":
            assert seq == last
        else:
            last = seq
    assert ours[-1] == ("board.mark", sent[1])


def test_a_board_joins_its_group_again_before_its_membership_expires(settings, monkeypatch):
    from channels.layers import channel_layers

    from devices import consumers

    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"group_expiry": 1}}
    }
    channel_layers.backends.clear()
    monkeypatch.setattr(consumers, "REJOIN_EVERY_S", 0.2)
    manager = _printer_lab()

    async def scenario():
        comm = await _watch(manager)
        await comm.receive_json_from(timeout=TIMEOUT)
        await asyncio.sleep(2.5)  # more than the group's expiry: only a re-join keeps the board in it
        await _group_send({"type": "board.frame", "frame": _frame("running", [1_800_000_000_001, 0])})
        frame = await comm.receive_json_from(timeout=TIMEOUT)
        await comm.disconnect()
        return frame

    try:
        assert async_to_sync(scenario)()["state"] == "running"
    finally:
        channel_layers.backends.clear()


def test_a_mark_counted_under_a_longer_schedule_does_not_stop_the_pusher():
    """The CI once lost every mark after this: a mark counted under the default schedule, then the
    schedule shortened (a test's monkeypatch), and the pusher thread died on an index error."""
    pusher = live._Pusher()
    pusher.mark_after_s = (0.05,)
    pusher._last_sent = {"lab.x": (time.monotonic() - 1.0, 2)}
    assert pusher._next_mark_in() == 0.0


def test_an_unreachable_channel_layer_is_logged_once_per_outage_not_per_frame(settings, caplog):
    """Redis not started yet (the first seconds of ``make run``): one warning, not a traceback per frame."""
    import logging
    import socket

    from channels.layers import channel_layers

    from fablab.settings import redis_channel_layer

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings.CHANNEL_LAYERS = {"default": redis_channel_layer(f"redis://127.0.0.1:{port}/0")}
    channel_layers.backends.clear()
    pusher = live._Pusher()
    pusher.mark_after_s = (0.0,)
    try:
        with caplog.at_level(logging.INFO, logger="devices.live"):
            for n in range(3):
                pusher.submit("lab.a", {"machine": "p", "v": [n + 1, 0], "state": "idle"})
                assert pusher.flush(timeout=60)
        failures = [r for r in caplog.records if r.name == "devices.live" and r.levelno >= logging.WARNING]
        assert len(failures) == 1 and failures[0].exc_info is None
        assert "ConnectionError" in failures[0].getMessage() or "refused" in failures[0].getMessage()
    finally:
        channel_layers.backends.clear()
