"""MQTT credentials and access rules, written as Mosquitto's password and ACL files.

Every bridge logs in as its bridge id and may only write its own machines'
status, telemetry, events and command acks, read its own machines' commands,
and publish its own online flag — plus the plug topics of the machines it
serves. Every power plug logs in with its own user name and may only use its
own topics. The hub reads everything under the contract and writes commands.

Passwords are generated here, shown once, and stored only as Mosquitto
``$7$`` hashes (PBKDF2-HMAC-SHA512, the format ``mosquitto_passwd`` writes
since Mosquitto 2.0), so ``mqtt_sync`` can write the password file without
ever knowing a password.

:func:`acl_text` and :func:`password_text` check every row they would write
first (:func:`data_problems`) and raise :class:`MqttDataError` instead of
writing anything unsafe: rows may predate the model validators or come from
fixtures or raw SQL. What is refused, and why, is in :mod:`devices.mqtt_names`.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
import tempfile
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import unquote, urlsplit

from django.conf import settings

from firmware_bridge import protocol

from . import mqtt_names
from .models import Bridge, MachineLink, PowerPlug
from .mqtt_names import filter_problem, name_problem, topic_problem
from .plug_topics import is_plug_kind, plug_overlap, plug_rules

PBKDF2_ITERATIONS = 101  # mosquitto_passwd's default for $7$
SALT_BYTES = 12
#: The broker's ``max_packet_size``, exported here for the configs the project writes.
MOSQUITTO_MAX_PACKET_SIZE = mqtt_names.MOSQUITTO_MAX_PACKET_SIZE

Rule = tuple[str, str]  # (access, topic filter): access is read, write or readwrite

_B64 = r"[A-Za-z0-9+/]+={0,2}"
#: What ``mosquitto_passwd`` writes: ``$7$iterations$salt$hash`` (2.0) or ``$6$salt$hash`` (1.x).
PASSWORD_HASH_RE = re.compile(rf"\$7\$[1-9][0-9]{{0,9}}\${_B64}\${_B64}|\$6\${_B64}\${_B64}")


class MqttDataError(ValueError):
    """Rows that cannot be written into Mosquitto's files; ``problems`` names each one."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def new_password() -> str:
    return secrets.token_urlsafe(24)


def hash_password(password: str, *, salt: bytes | None = None, iterations: int = PBKDF2_ITERATIONS) -> str:
    """Hash ``password`` the way ``mosquitto_passwd`` does (``$7$iterations$salt$hash``)."""
    salt = salt if salt is not None else os.urandom(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def set_bridge_password(bridge: Bridge) -> str:
    """Give ``bridge`` a new password; returns it (the only time it is known)."""
    password = new_password()
    bridge.mqtt_password_hash = hash_password(password)
    bridge.save(update_fields=["mqtt_password_hash"])
    return password


def set_plug_password(plug: PowerPlug) -> str:
    password = new_password()
    plug.mqtt_password_hash = hash_password(password)
    plug.save(update_fields=["mqtt_password_hash"])
    return password


def hub_credentials() -> tuple[str, str]:
    """The hub's user name and password, from MQTT_URL."""
    parts = urlsplit(settings.MQTT_URL)
    return unquote(parts.username or ""), unquote(parts.password or "")


def data_problems() -> list[str]:
    """Every row (and setting) that must not be written into Mosquitto's files, one line each.

    Each line names the model, its pk, the field and the value's ``repr``. Checked:
    every name against :mod:`devices.mqtt_names` (slugs against the MQTT contract's
    pattern), password hashes against ``mosquitto_passwd``'s formats, one broker
    user per name across the hub, bridges and plugs, links within one lab, plug
    topics of their own, and every topic filter about to be written.
    """
    problems: list[str] = []

    def bad(where: str, field: str, value: object, why: str) -> None:
        problems.append(f"{where} {field}={value!r} {why}")

    def slug(where: str, field: str, value: str) -> None:
        if not protocol.SLUG_RE.fullmatch(value):
            bad(where, field, value, name_problem(value) or "is not a slug ([a-z0-9][a-z0-9-]{0,62})")

    def password_hash(where: str, value: str) -> None:
        if value and not PASSWORD_HASH_RE.fullmatch(value):
            bad(where, "mqtt_password_hash", value, "is not a mosquitto_passwd hash ($7$… or $6$…)")

    owners: dict[str, list[str]] = {}
    hub_user, _hub_password = hub_credentials()
    if hub_user:
        where = "settings.MQTT_URL"
        problem = name_problem(hub_user)
        if problem:
            bad(where, "user name", hub_user, problem)
        owners.setdefault(hub_user, []).append(f"the hub ({where})")

    bridges = list(Bridge.objects.select_related("lab").order_by("pk"))
    for bridge in bridges:
        where = f"Bridge pk={bridge.pk}"
        slug(where, "slug", bridge.slug)
        password_hash(where, bridge.mqtt_password_hash)
        owners.setdefault(bridge.slug, []).append(f"{where} slug={bridge.slug!r}")

    for link in MachineLink.objects.select_related("bridge__lab", "machine__lab").order_by("pk"):
        where = f"MachineLink pk={link.pk}"
        machine, bridge = link.machine, link.bridge
        slug(f"Lab pk={machine.lab.pk}", "slug", machine.lab.slug)
        slug(f"Machine pk={machine.pk}", "slug", machine.slug)
        if machine.lab_id != bridge.lab_id:
            bad(
                where,
                "machine",
                f"{machine.lab.slug}/{machine.slug}",
                f"is in lab {machine.lab.slug!r}, but its bridge {bridge.slug!r} serves lab "
                f"{bridge.lab.slug!r}: a bridge only serves machines of its own lab",
            )

    plugs = list(PowerPlug.objects.select_related("machine").order_by("pk"))
    for i, plug in enumerate(plugs):
        where = f"PowerPlug pk={plug.pk}"
        problem = name_problem(plug.mqtt_username)
        if problem:
            bad(where, "mqtt_username", plug.mqtt_username, problem)
        password_hash(where, plug.mqtt_password_hash)
        owners.setdefault(plug.mqtt_username, []).append(f"{where} mqtt_username={plug.mqtt_username!r}")
        problem = topic_problem(plug.topic)
        if not is_plug_kind(plug.kind) or plug.kind not in PowerPlug.Kind.values:
            bad(where, "kind", plug.kind, "is not a power plug kind")
        elif problem:
            bad(where, "topic", plug.topic, problem)
        elif plug.kind == PowerPlug.Kind.TASMOTA and "/" in plug.topic:
            bad(where, "topic", plug.topic, "has more than one level (a Tasmota topic is one level)")
        else:
            # Each pair once: against the plugs after this one.
            conflict = plug_overlap(plug.kind, plug.topic, plugs[i + 1 :])
            if isinstance(conflict, str):
                bad(where, "topic", plug.topic, f"overlaps the MQTT contract's topics ({conflict})")
            elif conflict is not None:
                bad(
                    where,
                    "topic",
                    plug.topic,
                    f"overlaps the topics of PowerPlug pk={conflict.pk} topic={conflict.topic!r}",
                )

    for name, who in owners.items():
        if len(who) > 1:
            problems.append(f"broker user name {name!r} is used by more than one account: {'; '.join(who)}")
    return problems


def check_data() -> None:
    """Raise :class:`MqttDataError` listing :func:`data_problems`, if there are any."""
    problems = data_problems()
    if problems:
        raise MqttDataError(problems)


def bridge_rules(bridge: Bridge) -> list[Rule]:
    rules: list[Rule] = [("write", protocol.topic_bridge_online(bridge.slug))]
    # Only machines of the bridge's own lab, even if a link to another lab slipped in.
    links = MachineLink.objects.filter(bridge=bridge, machine__lab_id=bridge.lab_id).select_related(
        "machine__lab", "machine__power_plug"
    )
    for link in links.order_by("machine__lab__slug", "machine__slug"):
        lab, machine = link.machine.lab.slug, link.machine.slug
        rules += [
            ("write", protocol.topic_status(lab, machine)),
            ("write", protocol.topic_telemetry(lab, machine)),
            ("write", protocol.topic_event(lab, machine)),
            ("write", protocol.topic_cmd_ack(lab, machine)),
            ("read", protocol.topic_cmd(lab, machine)),
        ]
        plug = getattr(link.machine, "power_plug", None)
        if plug is not None:
            rules += plug_rules(plug.kind, plug.topic)[1]
    return rules


def hub_rules() -> list[Rule]:
    return [("read", protocol.filter_everything()), ("write", protocol.filter_all_cmds())]


def acl_text() -> str:
    """The whole ACL file. Anonymous clients (the lines before any ``user``) get nothing.

    Raises :class:`MqttDataError` (and returns nothing) if any row is unsafe to write.
    """
    check_data()
    lines = ["# Written by `manage.py mqtt_sync`; edits are overwritten.", ""]
    unsafe: list[str] = []

    def block(user: str, rules: Iterable[Rule], *, hub: bool = False) -> None:
        lines.append(f"user {user}")
        for access, topic in rules:
            # The last guard, whatever produced the filter (e.g. a plug's rules in the contract).
            problem = filter_problem(topic, plus=hub)
            if problem or access not in ("read", "write", "readwrite"):
                unsafe.append(f"ACL rule for user {user!r}: {access} {topic!r} {problem or 'bad access'}")
            lines.append(f"topic {access} {topic}")
        lines.append("")

    hub_user, _password = hub_credentials()
    if hub_user:
        block(hub_user, hub_rules(), hub=True)
    for bridge in Bridge.objects.order_by("slug"):
        block(bridge.slug, bridge_rules(bridge))
    for plug in PowerPlug.objects.order_by("mqtt_username"):
        block(plug.mqtt_username, plug_rules(plug.kind, plug.topic)[0])
    if unsafe:
        raise MqttDataError(unsafe)
    return "\n".join(lines)


def password_text() -> str:
    """The whole password file: ``user:hash`` lines for every account that has a password.

    Raises :class:`MqttDataError` (and returns nothing) if any row is unsafe to write.
    """
    check_data()
    lines = []
    hub_user, hub_password = hub_credentials()
    if hub_user and hub_password:
        lines.append(f"{hub_user}:{hash_password(hub_password)}")
    for slug, pw_hash in (
        Bridge.objects.exclude(mqtt_password_hash="")
        .order_by("slug")
        .values_list("slug", "mqtt_password_hash")
    ):
        lines.append(f"{slug}:{pw_hash}")
    for user, pw_hash in (
        PowerPlug.objects.exclude(mqtt_password_hash="")
        .order_by("mqtt_username")
        .values_list("mqtt_username", "mqtt_password_hash")
    ):
        lines.append(f"{user}:{pw_hash}")
    return "\n".join(lines) + "\n"


def write_atomically(path: Path, text: str, mode: int = 0o640) -> None:
    """Replace ``path`` in one step, so Mosquitto never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
