"""What may reach Mosquitto's password and ACL files, and what ``mqtt_sync`` does with the rest.

Names from the database become lines of Mosquitto's files: a ``#`` or ``+`` in a
plug topic would grant the whole broker, a newline would add a rule of its own,
one name for two accounts would merge them. The model validators and ``clean()``
refuse such rows in the admin; ``mqtt_sync`` re-checks every row it would write
(rows may come from fixtures or raw SQL) and, if one is bad, names it and leaves
the old files exactly as they were.
"""

from __future__ import annotations

import io
import os

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from devices.models import Bridge, MachineLink, PowerPlug
from devices.mqtt_auth import acl_text, bridge_rules, hash_password, password_text
from devices.mqtt_names import (
    filters_overlap,
    name_problem,
    topic_problem,
    validate_mqtt_name,
    validate_mqtt_topic,
)
from fablab.labs.models import Lab, Machine, slug_validator
from tests.factories import LabFactory, MachineFactory

pytestmark = pytest.mark.django_db

HUB = "fablab-hub"

#: Names Mosquitto's files would misread, and why.
UNSAFE_NAMES = {
    "#": "the whole broker",
    "+": "a wildcard level",
    "plug#": "a wildcard inside",
    "$SYS": "system topics",
    "a$b": "'$' anywhere",
    "plug\n": "a trailing newline (a line of its own)",
    "plug\ntopic readwrite #": "an injected ACL rule",
    "plug\r": "a carriage return",
    "plug a": "a space (Mosquitto trims and splits on blanks)",
    " plug": "a leading space",
    "plug\t": "a tab",
    "plug\u00a0": "a no-break space",
    "plug\u2003": "an em space",
    "plug\u2028": "a line separator",
    "a\x00b": "NUL",
    "a:b": "the password file's separator",
    "a/b": "a level separator inside one level",
    "": "empty",
    "-plug": "not starting with a letter or digit",
    "plüg": "non-ASCII",
    "x" * 101: "longer than the field",
}


@pytest.fixture
def hub(settings):
    settings.MQTT_URL = f"mqtt://{HUB}:hub-password@127.0.0.1:1"


@pytest.fixture
def world(hub):
    """Two labs, a bridge and a machine each; lab A's machine has a Tasmota plug."""
    lab_a, lab_b = LabFactory(slug="lab-a"), LabFactory(slug="lab-b")
    machine_a = MachineFactory(lab=lab_a, slug="printer-a")
    machine_b = MachineFactory(lab=lab_b, slug="printer-b")
    bridge_a = Bridge.objects.create(slug="bridge-a", lab=lab_a, mqtt_password_hash=hash_password("a"))
    bridge_b = Bridge.objects.create(slug="bridge-b", lab=lab_b, mqtt_password_hash=hash_password("b"))
    MachineLink.objects.create(machine=machine_a, bridge=bridge_a, adapter="tasmota")
    MachineLink.objects.create(machine=machine_b, bridge=bridge_b, adapter="octoprint")
    plug_a = PowerPlug.objects.create(
        machine=machine_a,
        kind="tasmota",
        topic="tasmota_1A2B3C",
        mqtt_username="plug-a",
        mqtt_password_hash=hash_password("p"),
    )
    return {
        "lab_a": lab_a,
        "lab_b": lab_b,
        "machine_a": machine_a,
        "machine_b": machine_b,
        "bridge_a": bridge_a,
        "bridge_b": bridge_b,
        "plug_a": plug_a,
    }


def errors_of(obj) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as info:
        obj.full_clean()
    return info.value.message_dict


class Files:
    """The password and ACL files as ``mqtt_sync`` last wrote them."""

    def __init__(self, tmp_path) -> None:
        self.password_file, self.acl_file = tmp_path / "passwords", tmp_path / "acl"

    def sync(self) -> str:
        out = io.StringIO()
        call_command("mqtt_sync", password_file=self.password_file, acl_file=self.acl_file, stdout=out)
        return out.getvalue()

    def refused(self) -> str:
        with pytest.raises(CommandError) as info:
            self.sync()
        return str(info.value)

    def snapshot(self) -> tuple[bytes, bytes, int, int]:
        # Contents and inodes: write_atomically replaces a file by a new inode.
        return (
            self.password_file.read_bytes(),
            self.acl_file.read_bytes(),
            os.stat(self.password_file).st_ino,
            os.stat(self.acl_file).st_ino,
        )


@pytest.fixture
def files(tmp_path, world) -> Files:
    f = Files(tmp_path)
    f.sync()
    return f


# -- the name rules ----------------------------------------------------------------------------


@pytest.mark.parametrize("value", list(UNSAFE_NAMES), ids=list(UNSAFE_NAMES.values()))
def test_a_name_mosquitto_would_misread_is_refused(value):
    assert name_problem(value)
    with pytest.raises(ValidationError):
        validate_mqtt_name(value)
    if "/" not in value:  # a plug topic may have several levels
        with pytest.raises(ValidationError):
            validate_mqtt_topic(value)


@pytest.mark.parametrize(
    "value", ["plug-a", "tasmota_1A2B3C", "DVES_USER", "shellyplusplugs-a8032ab12345", "a.b", "7"]
)
def test_plain_names_are_accepted(value):
    assert name_problem(value) is None
    validate_mqtt_name(value)
    validate_mqtt_topic(value)


@pytest.mark.parametrize("value", ["shellies/shellyplug-s-ABC123", "home/lab/plug-1"])
def test_a_plug_topic_may_have_several_levels(value):
    assert topic_problem(value) is None
    assert name_problem(value)  # but a user name may not


@pytest.mark.parametrize("value", ["/plug", "plug/", "a//b", "a/#", "a/+/b", "a/$b", "a/b c"])
def test_a_plug_topic_with_an_empty_or_unsafe_level_is_refused(value):
    assert topic_problem(value)
    with pytest.raises(ValidationError):
        validate_mqtt_topic(value)


@pytest.mark.parametrize("value", ["bridge-a\n", "bridge a", "Bridge-A", "bridge_a", "-bridge", "a" * 64])
def test_a_slug_is_refused_unless_it_is_the_contracts(value):
    # "$" in a Python pattern also matches before a final newline: the slug pattern must not.
    with pytest.raises(ValidationError):
        slug_validator(value)


def test_overlapping_filters_are_detected():
    assert filters_overlap("tele/#", "tele/plug_a/#")
    assert filters_overlap("a/#", "a")
    assert filters_overlap("fablab/v1/#", "fablab/#")
    assert filters_overlap("a/+/c", "a/b/#")
    assert not filters_overlap("tele/plug_a/#", "tele/plug_b/#")
    assert not filters_overlap("shellies/plug-1/#", "shellies/plug-10/#")
    assert not filters_overlap("a/b", "a/b/c")


# -- the models --------------------------------------------------------------------------------


@pytest.mark.parametrize("topic", ["#", "+", "tele/#", "plug+1", "cmnd/+/POWER"])
def test_a_plug_topic_with_a_wildcard_is_refused(world, topic):
    plug = world["plug_a"]
    plug.kind, plug.topic = "shelly", topic
    assert "topic" in errors_of(plug)


def test_a_plug_topic_or_user_name_with_a_newline_is_refused(world):
    plug = world["plug_a"]
    plug.topic = "tasmota_1\ntopic readwrite #"
    plug.mqtt_username = "plug-a\nuser fablab-hub"
    assert {"topic", "mqtt_username"} <= set(errors_of(plug))


def test_a_tasmota_topic_is_a_single_level(world):
    plug = world["plug_a"]
    plug.topic = "shellies/plug-1"
    assert "single level" in errors_of(plug)["topic"][0]
    plug.kind = "shelly"
    plug.full_clean()


def test_a_plug_topic_that_covers_another_plugs_topics_is_refused(world):
    # A Shelly prefix "tele" would get readwrite on tele/#: every Tasmota plug's telemetry.
    plug = PowerPlug(machine=world["machine_b"], kind="shelly", topic="tele", mqtt_username="plug-b")
    assert "overlap" in errors_of(plug)["topic"][0]
    plug.topic = "tele-b"
    plug.full_clean()


def test_a_plug_topic_inside_the_mqtt_contract_is_refused(world):
    plug = PowerPlug(
        machine=world["machine_b"], kind="shelly", topic="fablab/v1/lab-a/printer-a", mqtt_username="plug-b"
    )
    assert "fablab/v1/#" in errors_of(plug)["topic"][0]


def test_a_bridge_cannot_take_the_hubs_username(world):
    bridge = Bridge(slug=HUB, lab=world["lab_a"])
    assert "hub" in errors_of(bridge)["slug"][0]


def test_a_plug_cannot_take_the_hubs_username(world):
    plug = world["plug_a"]
    plug.mqtt_username = HUB
    assert "hub" in errors_of(plug)["mqtt_username"][0]


def test_a_bridge_cannot_take_a_plugs_username(world):
    bridge = Bridge(slug="plug-a", lab=world["lab_a"])
    assert "power plug" in errors_of(bridge)["slug"][0]


def test_a_plug_cannot_take_a_bridges_username(world):
    plug = world["plug_a"]
    plug.mqtt_username = "bridge-b"
    assert "Bridge" in errors_of(plug)["mqtt_username"][0]


def test_a_bridge_cannot_be_linked_to_a_machine_of_another_lab(world):
    link = world["machine_b"].link
    link.bridge = world["bridge_a"]
    assert "own lab" in errors_of(link)["bridge"][0]
    link.bridge = world["bridge_b"]
    link.full_clean()


def test_a_bridge_cannot_move_to_another_lab_while_it_serves_machines(world):
    bridge = world["bridge_a"]
    bridge.lab = world["lab_b"]
    assert "another lab" in errors_of(bridge)["lab"][0]


def test_the_demo_passes_every_check_and_syncs(tmp_path, hub):
    call_command("seed_demo", stdout=io.StringIO())
    assert PowerPlug.objects.exists() and Bridge.objects.exists()
    for model in (Lab, Machine, Bridge, MachineLink, PowerPlug):
        for obj in model.objects.all():
            obj.full_clean()
    assert "wrote" in Files(tmp_path).sync()


# -- mqtt_sync ---------------------------------------------------------------------------------

#: (model, field, value) written with .update() (no validator runs), as a fixture or SQL would.
BAD_ROWS = [
    ("plug_a", "topic", "#"),
    ("plug_a", "topic", "tasmota_1\ntopic readwrite #"),
    ("plug_a", "topic", "$SYS"),
    ("plug_a", "topic", "shellies/plug-1"),  # two levels for a Tasmota topic
    ("plug_a", "mqtt_username", "plug-a\nuser fablab-hub"),
    ("plug_a", "mqtt_username", "plug a"),
    ("plug_a", "mqtt_username", "evil:x"),
    ("plug_a", "mqtt_password_hash", hash_password("p") + "\nevil:" + hash_password("known")),
    ("plug_a", "kind", "octoprint"),  # an adapter, but no plug: it declares no broker_acl
    ("bridge_a", "slug", "bridge-a\n"),
    ("bridge_a", "slug", "bridge+a"),
    ("lab_a", "slug", "lab a"),
    ("machine_a", "slug", "printer-a/#"),
]


@pytest.mark.parametrize(("row", "field", "value"), BAD_ROWS, ids=[f"{r}.{f}={v!r}" for r, f, v in BAD_ROWS])
def test_mqtt_sync_writes_nothing_when_one_name_is_bad(files, world, row, field, value):
    before = files.snapshot()
    obj = world[row]
    type(obj).objects.filter(pk=obj.pk).update(**{field: value})
    message = files.refused()
    assert "nothing written" in message
    assert f"{type(obj).__name__} pk={obj.pk} {field}={value!r}" in message, message
    assert files.snapshot() == before


def test_mqtt_sync_names_every_bad_row_at_once(files, world):
    before = files.snapshot()
    PowerPlug.objects.update(topic="#")
    Bridge.objects.filter(pk=world["bridge_b"].pk).update(slug="bridge b")
    message = files.refused()
    assert f"PowerPlug pk={world['plug_a'].pk} topic='#'" in message
    assert f"Bridge pk={world['bridge_b'].pk} slug='bridge b'" in message
    assert files.snapshot() == before


def test_mqtt_sync_refuses_a_hub_user_name_mosquitto_would_misread(files, settings):
    before = files.snapshot()
    settings.MQTT_URL = "mqtt://hub%23:pw@127.0.0.1:1"
    assert "settings.MQTT_URL user name='hub#'" in files.refused()
    assert files.snapshot() == before


@pytest.mark.parametrize("pair", ["bridge-plug", "bridge-hub", "plug-hub"])
def test_mqtt_sync_refuses_one_user_name_for_two_accounts(files, world, pair):
    before = files.snapshot()
    if pair == "bridge-plug":
        Bridge.objects.filter(pk=world["bridge_b"].pk).update(slug="plug-a")
    elif pair == "bridge-hub":
        Bridge.objects.filter(pk=world["bridge_b"].pk).update(slug=HUB)
    else:
        PowerPlug.objects.update(mqtt_username=HUB)
    message = files.refused()
    assert "is used by more than one account" in message, message
    assert files.snapshot() == before


def test_mqtt_sync_refuses_a_link_to_a_machine_of_another_lab(files, world):
    before = files.snapshot()
    MachineLink.objects.filter(machine=world["machine_b"]).update(bridge=world["bridge_a"])
    link = MachineLink.objects.get(machine=world["machine_b"])
    message = files.refused()
    assert f"MachineLink pk={link.pk} machine='lab-b/printer-b' is in lab 'lab-b'" in message, message
    assert files.snapshot() == before
    assert "lab-b" not in files.acl_file.read_text().split("user bridge-a\n")[1].split("\n\n")[0]
    # Even asked directly, the rules of bridge-a grant nothing of lab B.
    assert not [t for _access, t in bridge_rules(world["bridge_a"]) if "lab-b" in t or "printer-b" in t]


def test_mqtt_sync_refuses_plugs_with_overlapping_topics(files, world):
    before = files.snapshot()
    PowerPlug.objects.create(machine=world["machine_b"], kind="shelly", topic="tele", mqtt_username="plug-b")
    assert "overlaps the topics of PowerPlug" in files.refused()
    assert files.snapshot() == before


def test_acl_text_and_password_text_refuse_on_their_own(world):
    PowerPlug.objects.update(topic="#")
    for text in (acl_text, password_text):
        with pytest.raises(ValueError, match="topic='#'"):
            text()


def test_mqtt_password_refuses_an_unsafe_name(world):
    PowerPlug.objects.update(mqtt_username="plug a")
    with pytest.raises(CommandError, match="cannot be a broker user name"):
        call_command("mqtt_password", "plug", "plug a", stdout=io.StringIO())
