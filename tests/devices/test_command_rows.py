"""Commands are rows; the hub publishes them: web → row → hub → Mosquitto → a real bridge, at least once.

The web process (the Django test client) gets no broker (``MQTT_URL`` empty). The hub runs as
``manage.py run_hub`` in a subprocess (to be killed) or in a thread; the bridge is the real
``firmware_bridge`` with a counting adapter, so "executed once per command id" is counted where
it happens. No timing is asserted: every wait is for an outcome.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from devices import command_publisher, commands, live
from devices.machines import MachineIndex
from devices.models import Command
from firmware_bridge import protocol
from firmware_bridge.adapters.base import ADAPTERS, register
from firmware_bridge.adapters.counter import CounterAdapter
from firmware_bridge.bridge import Bridge
from firmware_bridge.config import load
from tests.devices.board_fixtures import make_board, redis_layer, redis_server  # noqa: F401
from tests.devices.conftest import REPO, WAIT_S, HubProcess, hub_thread, wait_until
from tests.devices.test_commands_ui import CommandListener
from tests.factories import UserFactory
from tests.firmware_bridge.conftest import write_config

pytestmark = pytest.mark.django_db(transaction=True)

LAB, MACHINE = "board-lab", "printer-1"


class CountingAdapter(CounterAdapter):
    """Test-only: the counter adapter, counting every command it carries out (and the booking it served)."""

    name = "test-counting"
    executed: list[tuple[str, Any]] = []
    lock = threading.Lock()

    def command(self, action: str, params: Mapping[str, Any] | None = None) -> None:
        with type(self).lock:
            type(self).executed.append((action, (params or {}).get("booking")))
        super().command(action, params)


@pytest.fixture
def counting_adapter() -> Iterator[type[CountingAdapter]]:
    CountingAdapter.executed = []
    register(CountingAdapter)
    yield CountingAdapter
    ADAPTERS.pop(CountingAdapter.name, None)


@pytest.fixture
def bridge(tmp_path: Path, broker, counting_adapter) -> Iterator[Bridge]:
    """The real bridge serving the board's printer, interlocked (so enable/disable always succeed)."""
    machines = [
        {
            "lab": LAB,
            "machine": MACHINE,
            "adapter": counting_adapter.name,
            "interlock": True,
            "options": {"interval_s": 0.2, "job_s": 1000},
        }
    ]
    (tmp_path / "bridge").mkdir()
    b = Bridge(load(write_config(tmp_path / "bridge" / "bridge.toml", broker, machines)))
    b.start()
    assert b.transport.wait_connected(WAIT_S)
    yield b
    b.stop()


@pytest.fixture
def board(settings):
    settings.MQTT_URL = ""  # the web process holds no broker credentials
    return make_board()


@pytest.fixture
def listener(broker) -> Iterator[CommandListener]:
    """Counts every publication on the printer's ``cmd`` topic (what the bridge receives)."""
    listener = CommandListener(broker, LAB, MACHINE)
    yield listener
    listener.close()


def deliveries(listener: CommandListener) -> list[str]:
    """The command ids published so far, in order, repeats included."""
    return [json.loads(payload)["id"] for payload in list(listener.messages.queue)]


def row(pk) -> Command:
    return Command.objects.get(pk=pk)


def post_command(client, manager, action: str) -> str:
    client.force_login(manager)
    response = client.post(
        reverse("devices:command", args=[LAB, MACHINE]), {"action": action}, HTTP_ACCEPT="application/json"
    )
    assert response.status_code == 202, response.content
    return response.json()["id"]


def test_a_command_written_by_the_web_reaches_the_bridge_through_the_hub(
    client, board, broker, influx, bridge, listener, counting_adapter, tmp_path
):
    command_id = post_command(client, board["manager"], "disable")
    assert row(command_id).state == Command.State.PENDING
    hub = HubProcess(broker, influx, tmp_path / "hub", "hub-rows").start()
    try:
        wait_until(lambda: row(command_id).result == Command.Result.OK, what="the bridge's ok")
        wait_until(lambda: row(command_id).state == Command.State.PUBLISHED, what="the row marked published")
    finally:
        hub.stop()
    command = row(command_id)
    assert command.attempts == 1 and command.claimed_by.startswith("hub-rows/")
    assert counting_adapter.executed == [("disable", None)]
    assert deliveries(listener) == [command_id]


def test_the_booking_a_command_serves_travels_with_it_to_the_bridge(
    board, broker, influx, bridge, listener, counting_adapter, tmp_path
):
    booking = board["current"]
    command = commands.issue_command(
        machine=board["printer"], action="enable", booking=booking, source=Command.Source.SCHEDULER
    )
    with hub_thread(broker, influx, tmp_path):
        wait_until(lambda: row(command.pk).result == Command.Result.OK, what="the bridge's ok")
    assert counting_adapter.executed == [("enable", booking.pk)]
    assert row(command.pk).issued_by is None and row(command.pk).source == "scheduler"


class CrashingHub(HubProcess):
    """``run_hub`` through ``tests/devices/crashing_hub.py``: SIGKILLs itself at ``when``."""

    def __init__(self, when: str, *args: Any) -> None:
        super().__init__(*args)
        self.when = when

    def start(self) -> CrashingHub:
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [
                sys.executable, str(REPO / "tests" / "devices" / "crashing_hub.py"), self.when, "run_hub",
                "--client-id", self.client_id,
                "--spool", str(self.workdir / f"{self.client_id}.spool.sqlite3"),
                *self.extra,
            ],
            cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        wait_until(lambda: "subscribed to" in self.log(), what=f"hub {self.client_id} to subscribe")
        return self


@pytest.mark.parametrize("when", ["claim", "publish"])
def test_the_bridge_executes_each_command_id_once_even_when_the_hub_dies_after_claiming(
    when, board, broker, influx, bridge, listener, counting_adapter, tmp_path
):
    """Killed after the claim (nothing published) or after the broker's PUBACK (published, not marked):
    a second hub publishes the row again once the claim is stale; the bridge executes it once."""
    crashing = CrashingHub(when, broker, influx, tmp_path / "hubs", "hub-crash")
    crashing.start()
    # A long lifetime: the second hub has time to start, however slow the machine.
    command = commands.issue_command(
        machine=board["printer"], action="disable", issued_by=board["manager"], ttl_s=600
    )
    assert crashing.proc is not None
    assert crashing.proc.wait(timeout=WAIT_S) == -signal.SIGKILL, crashing.log()
    claimed = row(command.pk)
    assert claimed.state == Command.State.CLAIMED and claimed.attempts == 1
    assert claimed.claimed_by.startswith("hub-crash/")
    if when == "claim":
        assert deliveries(listener) == []
    else:
        wait_until(lambda: deliveries(listener) == [str(command.pk)], what="the dead hub's publication")
        wait_until(lambda: counting_adapter.executed, what="the bridge to carry it out")

    second = HubProcess(broker, influx, tmp_path / "hubs", "hub-second", "--command-claim-timeout", "1")
    second.start()
    try:
        wait_until(
            lambda: row(command.pk).state == Command.State.PUBLISHED, what="the second hub's publication"
        )
        wait_until(lambda: row(command.pk).result == Command.Result.OK, what="the bridge's ok")
        expected = 2 if when == "publish" else 1
        wait_until(lambda: len(deliveries(listener)) == expected, what="every publication at the bridge")
    finally:
        second.stop()
    command = row(command.pk)
    assert command.attempts == 2 and command.claimed_by.startswith("hub-second/")
    assert counting_adapter.executed == [("disable", None)]  # once, however often it came
    assert set(deliveries(listener)) == {str(command.pk)}


def test_two_claimers_racing_take_each_row_once(board):
    """Many rows, two claimers at once on their own database connections: no row is taken twice."""
    rows = [
        commands.issue_command(machine=board["printer"], action="enable", issued_by=board["manager"])
        for _ in range(120)
    ]
    taken: dict[str, list[str]] = {"hub-a": [], "hub-b": []}
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def claimer(name: str) -> None:
        try:
            start.wait(WAIT_S)
            while True:
                got = command_publisher.claim(name, limit=7)
                taken[name].extend(str(c.pk) for c in got)
                # On PostgreSQL a claim that lost every row of its pick to the other takes none,
                # with rows still pending: that is a retry, not the end.
                if not got and not Command.objects.filter(state=Command.State.PENDING).exists():
                    break
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=claimer, args=(name,)) for name in taken]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT_S)
    assert not errors, errors
    everything = taken["hub-a"] + taken["hub-b"]
    assert sorted(everything) == sorted(str(c.pk) for c in rows)  # each row once, none left behind
    assert len(set(everything)) == len(everything)
    by_row = dict(Command.objects.values_list("pk", "claimed_by"))
    assert all(str(pk) in taken[claimer] for pk, claimer in by_row.items())


def test_two_hubs_never_both_publish_a_row(board, broker, influx, listener, tmp_path):
    rows = [
        commands.issue_command(machine=board["printer"], action="enable", issued_by=board["manager"])
        for _ in range(60)
    ]
    with (
        hub_thread(broker, influx, tmp_path, client_id="hub-a"),
        hub_thread(broker, influx, tmp_path, client_id="hub-b"),
    ):
        wait_until(
            lambda: not Command.objects.exclude(state=Command.State.PUBLISHED).exists(),
            what="every row published",
        )
        wait_until(lambda: len(deliveries(listener)) >= len(rows), what="every publication")
    ids = deliveries(listener)
    assert sorted(ids) == sorted(str(c.pk) for c in rows)  # each exactly once
    assert set(Command.objects.values_list("attempts", flat=True)) == {1}


def test_an_expired_row_is_never_published(board, broker, influx, listener, tmp_path):
    late = commands.issue_command(machine=board["printer"], action="disable", issued_by=board["manager"])
    # Issued before the hub ever ran and expired meanwhile (older than the next one, so it would go first).
    past = timezone.now() - timedelta(minutes=2)
    Command.objects.filter(pk=late.pk).update(issued_at=past, expires_at=past + timedelta(seconds=30))
    fresh = commands.issue_command(machine=board["printer"], action="enable", issued_by=board["manager"])
    with hub_thread(broker, influx, tmp_path):
        wait_until(lambda: row(fresh.pk).state == Command.State.PUBLISHED, what="the fresh row published")
        wait_until(
            lambda: row(late.pk).state == Command.State.EXPIRED, what="housekeeping to end the late one"
        )
    assert deliveries(listener) == [str(fresh.pk)]
    late = row(late.pk)
    assert late.result == Command.Result.FAILED and late.error_code == "expired"
    assert late.attempts == 0 and late.published_at is None


def test_a_publisher_drops_a_claimed_row_whose_time_ran_out_before_publishing(board):
    """Claimed just in time, expired by the time it would go out: ended, never handed to the client."""
    command = commands.issue_command(machine=board["printer"], action="pause", issued_by=board["manager"])

    class NoClient:
        def publish(self, *args: Any, **kwargs: Any) -> None:
            raise AssertionError("an expired command was published")

    publisher = command_publisher.CommandPublisher(NoClient(), "hub-x", connected=lambda: True)
    original = command_publisher.claim

    def claim_then_expire(*args: Any, **kwargs: Any) -> list[Command]:
        rows = original(*args, **kwargs)
        Command.objects.filter(pk=command.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
        for r in rows:
            r.expires_at = timezone.now() - timedelta(seconds=1)
        return rows

    command_publisher.claim = claim_then_expire
    try:
        assert publisher.publish_due() == 1
    finally:
        command_publisher.claim = original
    command = row(command.pk)
    assert command.state == Command.State.EXPIRED and command.result == Command.Result.FAILED


def test_a_bridges_answer_replaces_the_hubs_expired_guess(board):
    """A hub may end a row as "expired before it could be sent" while another hub is just publishing
    it; if the bridge got it in time and carried it out, its ack is the truth the audit keeps."""
    command = commands.issue_command(machine=board["printer"], action="pause", issued_by=board["manager"])
    Command.objects.filter(pk=command.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert commands.expire_commands() == 1
    assert row(command.pk).state == Command.State.EXPIRED
    index = MachineIndex()
    index.reload()
    info = index.get(board["lab"].slug, board["printer"].slug)
    ack = protocol.CommandAck(id=str(command.pk), ok=True, ts=protocol.now_ms())
    assert commands.apply_cmd_ack(info, ack) is not None
    command = row(command.pk)
    assert command.result == Command.Result.OK and command.error_code == ""
    assert command.state == Command.State.PUBLISHED


def test_a_row_that_cannot_be_published_is_refused_and_does_not_hold_up_the_others(board):
    broken = commands.issue_command(machine=board["printer"], action="pause", issued_by=board["manager"])
    good = commands.issue_command(machine=board["laser"], action="pause", issued_by=board["manager"])
    # A slug the contract refuses (written past the validators, as old data may be).
    type(board["printer"]).objects.filter(pk=board["printer"].pk).update(slug="Printer 1")
    published: list[str] = []

    class Delivered:
        def wait_for_publish(self, timeout: float) -> None:
            pass

        def is_published(self) -> bool:
            return True

    class RecordingClient:
        def publish(self, topic: str, payload: bytes, **kwargs: Any) -> Delivered:
            published.append(json.loads(payload)["id"])
            return Delivered()

    publisher = command_publisher.CommandPublisher(RecordingClient(), "hub-x", connected=lambda: True)
    assert publisher.publish_due() == 2
    assert published == [str(good.pk)]
    assert row(good.pk).state == Command.State.PUBLISHED
    broken = row(broken.pk)
    assert broken.state == Command.State.EXPIRED and broken.result == Command.Result.FAILED
    assert broken.error_code == "invalid" and "cannot be published" in broken.error_message
    assert publisher.publish_due() == 0  # nothing left to claim again


def test_a_members_erasure_keeps_the_command_audit(client, board):
    member = UserFactory(username="short-lived")
    board["lab"].managers.add(member)
    command = commands.issue_command(machine=board["printer"], action="pause", issued_by=member)
    member.delete()
    kept = Command.objects.select_related("machine__lab", "issued_by").get(pk=command.pk)
    assert kept.issued_by is None and kept.source == Command.Source.MEMBER
    assert (kept.action, kept.machine) == ("pause", board["printer"])
    assert live.command_frame(kept)["by"] == "Member"
    client.force_login(board["manager"])
    page = client.get(reverse("devices:machine", args=[LAB, MACHINE])).content.decode()
    audit_row = page.split(f'data-command="{command.pk}"')[1].split("</tr>")[0]
    assert "<td>Member</td>" in audit_row


def test_a_command_needs_a_known_action_and_a_booking_of_its_machine(board):
    with pytest.raises(ValueError, match="unknown action"):
        commands.issue_command(machine=board["printer"], action="explode", issued_by=board["manager"])
    with pytest.raises(ValueError, match="needs issued_by"):
        commands.issue_command(machine=board["printer"], action="pause", source=Command.Source.MEMBER)
    other = board["upcoming"]  # the laser's
    with pytest.raises(ValueError, match="not a booking of this machine"):
        commands.issue_command(machine=board["printer"], action="pause", booking=other)
    assert not Command.objects.exists()


def test_a_command_wakes_the_hub_through_the_channel_layer(
    board,
    broker,
    influx,
    listener,
    redis_layer,  # noqa: F811
    tmp_path,
):
    """With the Redis layer the hub need not poll: with its poll at ten minutes, the command still goes out."""
    with hub_thread(broker, influx, tmp_path, command_poll_s=600) as hub:
        assert hub.publisher is not None
        wait_until(lambda: hub.publisher._listener.listening.is_set(), what="the hub to listen for wake-ups")
        command = commands.issue_command(machine=board["printer"], action="pause", issued_by=board["manager"])
        wait_until(lambda: deliveries(listener) == [str(command.pk)], what="the woken hub's publication")


# -- the API


def api_post(client, machine_pk: int, body: Any):
    return client.post(
        f"/api/v1/machines/{machine_pk}/commands/", data=json.dumps(body), content_type="application/json"
    )


def test_a_lab_manager_sends_a_command_through_the_api_and_follows_it(client, board):
    client.force_login(board["manager"])
    response = api_post(client, board["printer"].pk, {"action": "pause"})
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["state"] == "pending" and body["result"] == "sent" and body["action"] == "pause"
    assert body["issued_by"] == "manager-m" and body["machine"] == board["printer"].pk
    followed = client.get(f"/api/v1/commands/{body['id']}/")
    assert followed.status_code == 200 and followed.json()["id"] == body["id"]
    assert Command.objects.get().issued_by == board["manager"]


def test_only_the_labs_managers_may_command_its_machines_through_the_api(client, board):
    client.force_login(board["manager"])
    mine = api_post(client, board["printer"].pk, {"action": "pause"}).json()["id"]
    client.force_login(board["maker_b"])  # holds the printer's booking, manages nothing
    response = api_post(client, board["printer"].pk, {"action": "pause"})
    assert response.status_code == 403 and response.json()["code"] == "permission_denied"
    assert client.get(f"/api/v1/commands/{mine}/").status_code == 404  # ids reveal nothing
    assert client.get(f"/api/v1/commands/{uuid.uuid4()}/").status_code == 404
    assert Command.objects.count() == 1


def test_the_api_refuses_an_unknown_action_and_an_unknown_machine(client, board):
    client.force_login(board["manager"])
    response = api_post(client, board["printer"].pk, {"action": "explode"})
    assert response.status_code == 400 and response.json()["code"] == "invalid"
    assert "action" in response.json()["fields"]
    assert api_post(client, 10**9, {"action": "pause"}).status_code == 404
    assert not Command.objects.exists()
