"""Write Mosquitto's password and ACL files from the database, then reload the broker.

Every row is checked before anything is written (``devices.mqtt_auth.data_problems``):
if one is unsafe, the command fails naming each offending row and both files
stay exactly as they were.
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from devices.mqtt_auth import MqttDataError, acl_text, password_text, write_atomically


class Command(BaseCommand):
    help = (
        "Write the broker's password file and ACL file (one user per bridge and per power plug, "
        "plus the hub) and make Mosquitto reload them."
    )

    def add_arguments(self, parser):
        parser.add_argument("--password-file", type=Path, default=settings.MQTT_PASSWORD_FILE)
        parser.add_argument("--acl-file", type=Path, default=settings.MQTT_ACL_FILE)
        parser.add_argument(
            "--group", help="give the files to this group (e.g. mosquitto) so the broker can read them"
        )
        parser.add_argument("--reload-pid", type=Path, help="Mosquitto's pid file: send it SIGHUP to reload")

    def handle(self, *args, password_file: Path, acl_file: Path, group, reload_pid, **options):
        try:
            # Both texts first: a refusal must leave both old files in place.
            passwords, acl = password_text(), acl_text()
        except MqttDataError as exc:
            lines = "\n".join(f"  {problem}" for problem in exc.problems)
            raise CommandError(
                f"nothing written: {len(exc.problems)} problem(s); "
                f"fix them (e.g. in the admin) and run mqtt_sync again:\n{lines}"
            ) from exc
        write_atomically(password_file, passwords)
        write_atomically(acl_file, acl)
        if group:
            for path in (password_file, acl_file):
                shutil.chown(path, group=group)
        self.stdout.write(f"wrote {password_file} and {acl_file}")
        if reload_pid:
            try:
                pid = int(reload_pid.read_text().strip())
                os.kill(pid, signal.SIGHUP)
            except (OSError, ValueError) as exc:
                raise CommandError(f"could not reload Mosquitto from {reload_pid}: {exc}") from exc
            self.stdout.write(f"sent SIGHUP to Mosquitto (pid {pid})")
