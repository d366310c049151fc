"""The demo's bridges, machine links and power plugs, taken from the demo
bridge configurations (firmware_bridge/demo/*.toml) so the two never drift.

Passwords are kept under var/secrets/ (never in the repository) so that a
second `make run` reuses them; `demo_mqtt_urls()` hands them to the demo's
bridge and plug simulators.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from django.conf import settings
from django.db import transaction

from devices.models import Bridge, MachineLink, PowerPlug
from devices.mqtt_auth import hash_password
from fablab.labs.models import Lab, Machine
from fablab.settings import local_secret
from firmware_bridge.config import load

DEMO_DIR = Path(settings.BASE_DIR) / "firmware_bridge" / "demo"
PLUG_ADAPTERS = ("tasmota", "shelly")


def demo_configs() -> list[Path]:
    return sorted(DEMO_DIR.glob("*.toml"))


def plug_user(machine_slug: str) -> str:
    return f"plug-{machine_slug}"


@transaction.atomic
def seed() -> list[str]:
    """Create or update the demo's bridges, links and plugs; returns the bridge ids."""
    bridges = []
    for path in demo_configs():
        cfg = load(path)
        first = cfg.machines[0]
        bridge, _ = Bridge.objects.update_or_create(
            slug=cfg.bridge.id, defaults={"lab": Lab.objects.get(slug=first.lab), "name": f"Demo {first.lab}"}
        )
        bridge.mqtt_password_hash = hash_password(local_secret(f"mqtt-{bridge.slug}"))
        bridge.save(update_fields=["mqtt_password_hash"])
        for m in cfg.machines:
            machine = Machine.objects.get(lab__slug=m.lab, slug=m.machine)
            MachineLink.objects.update_or_create(
                machine=machine,
                defaults={
                    "bridge": bridge,
                    "adapter": m.adapter,
                    "interlock": m.interlock,
                    # A plug reports only every TelePeriod; the others at about 1 Hz.
                    "telemetry_interval_s": 60 if m.adapter in PLUG_ADAPTERS else 5,
                },
            )
            if m.adapter in PLUG_ADAPTERS:
                topic = m.options["topic"] if m.adapter == "tasmota" else m.options["prefix"]
                user = plug_user(m.machine)
                PowerPlug.objects.update_or_create(
                    machine=machine,
                    defaults={
                        "kind": m.adapter,
                        "topic": topic,
                        "mqtt_username": user,
                        "mqtt_password_hash": hash_password(local_secret(f"mqtt-{user}")),
                    },
                )
        bridges.append(bridge.slug)
    return bridges


def mqtt_url_for(user: str, host: str, port: int) -> str:
    return f"mqtt://{quote(user, safe='')}:{quote(local_secret(f'mqtt-{user}'), safe='')}@{host}:{port}"
