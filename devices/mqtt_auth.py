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
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import tempfile
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import unquote, urlsplit

from django.conf import settings

from firmware_bridge import protocol
from firmware_bridge.adapters.base import ADAPTERS

from .models import Bridge, MachineLink, PowerPlug

PBKDF2_ITERATIONS = 101  # mosquitto_passwd's default for $7$
SALT_BYTES = 12

Rule = tuple[str, str]  # (access, topic filter): access is read, write or readwrite


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


def _plug_rules(kind: str, topic: str) -> tuple[list[Rule], list[Rule]]:
    """(rules for the plug itself, rules for the bridge that talks to it), from the adapter."""
    adapter = ADAPTERS.get(kind)
    rules = getattr(adapter, "broker_acl", None)
    if rules is None:
        raise RuntimeError(f"the {kind} adapter does not declare its broker_acl")
    return rules(topic)


def bridge_rules(bridge: Bridge) -> list[Rule]:
    rules: list[Rule] = [("write", protocol.topic_bridge_online(bridge.slug))]
    links = MachineLink.objects.filter(bridge=bridge).select_related("machine__lab", "machine__power_plug")
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
            rules += _plug_rules(plug.kind, plug.topic)[1]
    return rules


def hub_rules() -> list[Rule]:
    return [("read", protocol.filter_everything()), ("write", protocol.filter_all_cmds())]


def acl_text() -> str:
    """The whole ACL file. Anonymous clients (the lines before any ``user``) get nothing."""
    lines = ["# Written by `manage.py mqtt_sync`; edits are overwritten.", ""]

    def block(user: str, rules: Iterable[Rule]) -> None:
        lines.append(f"user {user}")
        lines.extend(f"topic {access} {topic}" for access, topic in rules)
        lines.append("")

    hub_user, _password = hub_credentials()
    if hub_user:
        block(hub_user, hub_rules())
    for bridge in Bridge.objects.order_by("slug"):
        block(bridge.slug, bridge_rules(bridge))
    for plug in PowerPlug.objects.order_by("mqtt_username"):
        block(plug.mqtt_username, _plug_rules(plug.kind, plug.topic)[0])
    return "\n".join(lines)


def password_text() -> str:
    """The whole password file: ``user:hash`` lines for every account that has a password."""
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
