"""The board and the API offer only the commands a machine can carry out, and say why in the user's language.

A machine's bridge declares its capabilities in every status (``status.capabilities``); the hub
stores them, the board shows only those buttons, the pages and the API refuse anything else
before a command row is written, and every ack code a bridge may answer reads as a translatable
sentence. Real parts: the database, and in the end-to-end test a real bridge, Mosquitto, InfluxDB
and the hub.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils.functional import Promise
from django.utils.html import escape

from devices import capabilities, commands, live
from devices.capabilities import ACK_EXPLANATIONS, REFUSALS, CommandRefused, offered
from devices.machines import MachineInfo
from devices.models import Command, MachineLink, MachineStatus
from devices.status import apply_status
from fablab.labs.models import Machine
from firmware_bridge import protocol
from firmware_bridge.bridge import Bridge
from firmware_bridge.config import load
from tests.devices.conftest import WAIT_S, hub_thread, make_machine, wait_until
from tests.factories import LabFactory, UserFactory
from tests.firmware_bridge.conftest import write_config

LAB = "caps-lab"
JOB = ("pause", "resume", "cancel")
INTERLOCK = ("enable", "disable")
BUTTON_ORDER = ("pause", "resume", "cancel", "enable", "disable")


def machine_with(slug: str, adapter: str, *, interlock: bool = False, lab=None) -> Machine:
    machine = make_machine(lab or LabFactory(slug=LAB, name="Caps lab"), slug=slug, adapter=adapter)
    MachineLink.objects.filter(machine=machine).update(interlock=interlock)
    return machine


def info_of(machine: Machine) -> MachineInfo:
    link = MachineLink.objects.select_related("bridge").get(machine=machine)
    return MachineInfo(
        id=machine.pk,
        lab=machine.lab.slug,
        slug=machine.slug,
        machine_type=machine.machine_type.slug,
        adapter=link.adapter,
        interval_s=link.telemetry_interval_s,
        bridge=link.bridge.slug,
    )


def raw_status(adapter: str, ts: int, **extra) -> bytes:
    """A status payload as a bridge sends it (``capabilities`` only if given)."""
    body = {"v": 1, "state": "idle", "enabled": True, "bridge": "bridge-1", "adapter": adapter, "ts": ts}
    return json.dumps({**body, **extra}).encode()


def receive(machine: Machine, adapter: str, ts: int, **extra) -> MachineStatus:
    """Decode a bridge's status payload and apply it the way the hub does."""
    applied = apply_status(info_of(machine), protocol.decode_status(raw_status(adapter, ts, **extra)))
    assert applied is not None
    return MachineStatus.objects.select_related("machine").get(pk=machine.pk)


def card_of(html: str, slug: str) -> str:
    return html.split(f'id="machine-{slug}"')[1].split("</li>\n")[0]


def buttons_in(card: str) -> list[str]:
    """The command buttons of a card, in the page's order (pause, resume, cancel, enable, disable)."""
    return re.findall(r'<button type="submit" name="action" value="(\w+)"', card)


def in_page_order(actions) -> list[str]:
    return [a for a in BUTTON_ORDER if a in actions]


def manager_of(lab):
    manager = UserFactory(username=f"manager-{lab.slug}", first_name="Mia", last_name="Manager")
    lab.managers.add(manager)
    return manager


# ------------------------------------------------------------------------- what is offered


@pytest.mark.django_db
def test_a_plug_driven_laser_offers_no_pause(client):
    lab = LabFactory(slug=LAB, name="Caps lab")
    shelly = machine_with("laser-shelly", "shelly", lab=lab)
    tasmota = machine_with("laser-tasmota", "tasmota", interlock=True, lab=lab)
    printer = machine_with("printer", "octoprint", lab=lab)
    # What the bridge declares for each (bridge side: tests/firmware_bridge/test_capabilities.py).
    statuses = {
        shelly: receive(shelly, "shelly", 1_000, capabilities=[], state="running"),
        tasmota: receive(tasmota, "tasmota", 1_000, capabilities=list(INTERLOCK), state="running"),
        printer: receive(printer, "octoprint", 1_000, capabilities=list(JOB), state="running"),
    }
    client.force_login(manager_of(lab))

    html = client.get(reverse("devices:board", args=[LAB])).content.decode()
    assert buttons_in(card_of(html, "laser-shelly")) == []
    assert buttons_in(card_of(html, "laser-tasmota")) == ["enable", "disable"]
    assert buttons_in(card_of(html, "printer")) == ["pause", "resume", "cancel"]
    # A card with nothing to offer shows no command form at all.
    assert '<form class="commands"' in card_of(html, "laser-shelly")
    assert re.search(r'<form class="commands"[^>]* hidden>', card_of(html, "laser-shelly"))
    assert not re.search(r'<form class="commands"[^>]* hidden>', card_of(html, "laser-tasmota"))

    page = client.get(reverse("devices:machine", args=[LAB, "laser-tasmota"])).content.decode()
    assert buttons_in(card_of(page, "laser-tasmota")) == ["enable", "disable"]

    # The live frames the hub pushes carry the same list; the page's script follows it.
    frames = {m.slug: live.machine_frame(s) for m, s in statuses.items()}
    assert frames["laser-shelly"]["commands"] == []
    assert frames["laser-tasmota"]["commands"] == ["enable", "disable"]
    assert frames["printer"]["commands"] == ["pause", "resume", "cancel"]


@pytest.mark.django_db
def test_each_declared_capability_list_is_stored_as_sent_and_replaced_by_the_next_status():
    machine = machine_with("counter", "counter")
    assert receive(machine, "counter", 1_000, capabilities=list(protocol.ACTIONS)).capabilities == list(
        protocol.ACTIONS
    )
    # The bridge's configuration lost its interlock: the next status says so, and it wins.
    assert receive(machine, "counter", 2_000, capabilities=list(JOB)).capabilities == list(JOB)
    # A status older than the one applied changes nothing, its capabilities included.
    apply_status(info_of(machine), protocol.decode_status(raw_status("counter", 1_500, capabilities=[])))
    assert MachineStatus.objects.get(pk=machine.pk).capabilities == list(JOB)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("adapter", "interlock", "extra", "expected"),
    [
        ("grbl", False, {}, JOB),
        ("octoprint", True, {}, protocol.ACTIONS),
        ("shelly", True, {}, INTERLOCK),
        ("tasmota", False, {}, ()),
        # Only an interlocked machine can be disabled: the link may be out of date, the status is not.
        ("tasmota", False, {"enabled": False}, INTERLOCK),
        ("a-newer-adapter", False, {}, ()),
    ],
)
def test_an_old_bridge_without_capabilities_gets_the_documented_fallback(
    client, adapter, interlock, extra, expected
):
    """hardware_docs/mqtt-contract.md, "A bridge without the field": the adapter's legacy job
    actions, and the interlock's when the link says interlock or the status reports disabled."""
    lab = LabFactory(slug=LAB, name="Caps lab")
    machine = machine_with("old", "octoprint" if adapter == "a-newer-adapter" else adapter, lab=lab)
    MachineLink.objects.filter(machine=machine).update(interlock=interlock)
    status = receive(machine, adapter, 1_000, **extra)
    assert status.capabilities is None  # not declared, which is not "can do nothing"
    link = MachineLink.objects.get(machine=machine)
    assert offered(status, link) == expected
    assert capabilities.offered_to(machine) == expected

    client.force_login(manager_of(lab))
    html = client.get(reverse("devices:board", args=[LAB])).content.decode()
    assert buttons_in(card_of(html, "old")) == in_page_order(expected)
    # The hub does not read the link per status: its frame leaves "commands" to the board's cards.
    assert "commands" not in live.machine_frame(status)


@pytest.mark.django_db
def test_a_machine_never_heard_from_falls_back_on_its_link():
    machine = machine_with("new", "grbl", interlock=True)
    assert not MachineStatus.objects.filter(pk=machine.pk).exists()
    assert capabilities.offered_to(machine) == protocol.ACTIONS
    unlinked = make_machine(machine.lab, slug="unlinked")
    MachineLink.objects.filter(machine=unlinked).delete()
    assert capabilities.offered_to(unlinked) == ()


# ------------------------------------------------------------------------------- refusals


@pytest.mark.django_db
def test_a_command_the_machine_cannot_do_is_refused_before_it_is_sent(client):
    lab = LabFactory(slug=LAB, name="Caps lab")
    laser = machine_with("laser-shelly", "shelly", lab=lab)
    receive(laser, "shelly", 1_000, capabilities=[], state="running")
    manager = manager_of(lab)
    client.force_login(manager)
    url = reverse("devices:command", args=[LAB, "laser-shelly"])
    reason = str(REFUSALS["pause"]) % {"machine": laser.name}

    # The board's script (JSON): a refusal it shows as "could not be sent: <reason>".
    response = client.post(url, {"action": "pause"}, HTTP_ACCEPT="application/json")
    assert response.status_code == 409
    assert response.json() == {"error": {"code": "unsupported", "message": reason}}
    # A plain form post: back to the page, the reason among its messages.
    response = client.post(url, {"action": "disable", "next": "/labs/"}, follow=True)
    assert response.redirect_chain[-1][0] == "/labs/"
    no_interlock = str(REFUSALS["disable"]) % {"machine": laser.name}
    assert escape(no_interlock) in response.content.decode()
    # The API: 400 invalid, the reason under the action field.
    response = client.post(
        f"/api/v1/machines/{laser.pk}/commands/", {"action": "cancel"}, content_type="application/json"
    )
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "invalid"
    assert body["fields"] == {"action": [str(REFUSALS["cancel"]) % {"machine": laser.name}]}
    # The service every caller goes through (the scheduler of the next issue too).
    with pytest.raises(CommandRefused) as refused:
        commands.issue_command(machine=laser, action="resume", issued_by=manager)
    assert refused.value.code == protocol.UNSUPPORTED and laser.name in refused.value.message
    # Nothing was written, so the hub has nothing to publish.
    assert not Command.objects.exists()

    # What the machine offers still goes through.
    receive(laser, "shelly", 2_000, capabilities=list(INTERLOCK))
    assert client.post(url, {"action": "disable"}, HTTP_ACCEPT="application/json").status_code == 202
    assert list(Command.objects.values_list("action", flat=True)) == ["disable"]


@pytest.mark.django_db
def test_every_refusal_is_a_translatable_sentence_naming_the_machine():
    assert set(REFUSALS) == set(protocol.ACTIONS)
    for action, text in REFUSALS.items():
        assert isinstance(text, Promise), action  # gettext_lazy: extracted, and read in the user's language
        assert "%(machine)s" in str(text), action


# -------------------------------------------------------------------------- ack explanations


@pytest.mark.django_db
def test_every_ack_code_has_a_translated_explanation(client):
    assert set(ACK_EXPLANATIONS) == {*protocol.ACK_CODES, ""}
    texts = {code: str(text) for code, text in ACK_EXPLANATIONS.items()}
    assert all(isinstance(text, Promise) for text in ACK_EXPLANATIONS.values())
    assert len(set(texts.values())) == len(texts)  # one sentence per code, none shared
    assert capabilities.ack_explanation("a-newer-code") == texts[""]
    assert capabilities.ack_explanation(None) == texts[""]

    lab = LabFactory(slug=LAB, name="Caps lab")
    printer = machine_with("printer", "octoprint", lab=lab)
    receive(printer, "octoprint", 1_000, capabilities=list(JOB))
    manager = manager_of(lab)
    for code in protocol.ACK_CODES:
        commands.issue_command(machine=printer, action="pause", issued_by=manager)
        Command.objects.filter(error_code="", result=Command.Result.SENT).update(
            result=Command.Result.FAILED, error_code=code, error_message=f"bridge said {code}"
        )
    client.force_login(manager)
    html = client.get(reverse("devices:machine", args=[LAB, "printer"])).content.decode()
    # The page's script gets every explanation (for the acks that arrive live) ...
    strings = json.loads(html.split('id="board-strings" type="application/json">')[1].split("</script>")[0])
    assert strings["ack_codes"] == texts
    # ... and the audit shows each, the bridge's words after it as detail for the manager.
    audit = html.split('id="command-audit"')[1]
    for code in protocol.ACK_CODES:
        assert f"Refused: {escape(texts[code])} (bridge said {code})" in audit


# ------------------------------------------------------------------------------ end to end


@pytest.mark.django_db(transaction=True)
def test_a_bridges_declared_capabilities_reach_the_board_through_the_hub(
    client, broker, influx, tmp_path: Path
):
    """A real bridge (a counter without interlock, a Shelly with one) → Mosquitto → the hub → the board."""
    lab = LabFactory(slug=LAB, name="Caps lab")
    machine_with("counter", "octoprint", lab=lab)  # the link's adapter is not what is offered: the bridge is
    machine_with("laser", "shelly", lab=lab)
    machines = [
        {
            "lab": LAB,
            "machine": "counter",
            "adapter": "counter",
            "options": {"interval_s": 0.2, "job_s": 1000},
        },
        {
            "lab": LAB,
            "machine": "laser",
            "adapter": "shelly",
            "interlock": True,
            "options": {"prefix": "shellyplusplugs-caps-e2e"},
        },
    ]
    (tmp_path / "bridge").mkdir()
    bridge = Bridge(load(write_config(tmp_path / "bridge" / "bridge.toml", broker, machines)))
    bridge.start()
    try:
        assert bridge.transport.wait_connected(WAIT_S)
        with hub_thread(broker, influx, tmp_path):
            wait_until(
                lambda: (
                    dict(
                        MachineStatus.objects.filter(capabilities__isnull=False).values_list(
                            "machine__slug", "capabilities"
                        )
                    )
                    == {"counter": list(JOB), "laser": list(INTERLOCK)}
                ),
                what="both machines' capabilities stored",
            )
    finally:
        bridge.stop()
    client.force_login(manager_of(lab))
    html = client.get(reverse("devices:board", args=[LAB])).content.decode()
    assert buttons_in(card_of(html, "counter")) == list(JOB)
    assert buttons_in(card_of(html, "laser")) == list(INTERLOCK)
