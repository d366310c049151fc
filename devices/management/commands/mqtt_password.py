"""Issue a new MQTT password for a bridge or a power plug and print it once."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from devices.models import Bridge, PowerPlug
from devices.mqtt_auth import set_bridge_password, set_plug_password
from devices.mqtt_names import name_problem


class Command(BaseCommand):
    help = (
        "Give a bridge (by id) or a power plug (by MQTT user name) a new password; run mqtt_sync afterwards."
    )

    def add_arguments(self, parser):
        parser.add_argument("kind", choices=["bridge", "plug"])
        parser.add_argument("name")

    def handle(self, *args, kind: str, name: str, **options):
        problem = name_problem(name)
        if problem:
            # mqtt_sync would refuse to write this account: a password for it would never work.
            raise CommandError(
                f"{name!r} {problem}: it cannot be a broker user name; rename the {kind} first"
            )
        try:
            if kind == "bridge":
                password = set_bridge_password(Bridge.objects.get(slug=name))
            else:
                password = set_plug_password(PowerPlug.objects.get(mqtt_username=name))
        except (Bridge.DoesNotExist, PowerPlug.DoesNotExist) as exc:
            raise CommandError(f"no {kind} named {name!r}") from exc
        self.stdout.write(password)
