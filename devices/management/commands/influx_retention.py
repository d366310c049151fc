"""``python manage.py influx_retention``: telemetry retention policies and downsampling in InfluxDB 1.x.

Without options it shows the policies, what ``--apply`` would change and how far downsampling got.
``--apply`` creates or alters ``"raw"`` and ``"hourly"`` from ``INFLUX_RAW_RETENTION`` and
``INFLUX_HOURLY_RETENTION``, makes ``"raw"`` the default, and copies into it the last raw retention
of the policy that was the default before (``autogen`` of an existing database), so the charts keep
their history. ``--downsample`` runs downsampling passes until the last complete hour is done;
``--from DATE`` does it again from that UTC date (points spooled in late). Both are safe to rerun.
See devices/influx_retention.py and docs/telemetry-retention.md.
"""

from __future__ import annotations

import datetime as dt

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from devices import influx_retention as retention
from devices.influx import InfluxError, InfluxStore


class Command(BaseCommand):
    help = "Show or apply the telemetry retention policies of InfluxDB 1.x, and downsample to hourly points."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--apply", action="store_true", help="create/alter the policies, make raw the default"
        )
        parser.add_argument(
            "--no-copy", action="store_true", help="with --apply: do not copy the previous default policy"
        )
        parser.add_argument("--downsample", action="store_true", help="downsample every complete hour now")
        parser.add_argument("--from", dest="since", help="with --downsample: start again at this UTC date")

    def handle(self, *args, **options) -> None:
        try:
            raw_s, hourly_s = retention.configured_durations()
            store = InfluxStore.from_settings()
            since = _date(options["since"]) if options["since"] else None
        except ValueError as exc:
            raise CommandError(f"configuration error: {exc}") from None
        if store.v2:
            self.stdout.write(
                "InfluxDB v2/v3 (INFLUX_TOKEN set): retention is the bucket's and downsampling a task; "
                "see docs/telemetry-retention.md"
            )
            return
        try:
            if options["apply"]:
                self._apply(store, raw_s, hourly_s, copy=not options["no_copy"])
            if options["downsample"]:
                self._downsample(store, since)
            self._show(store, raw_s, hourly_s)
        except InfluxError as exc:
            raise CommandError(str(exc)) from None
        finally:
            store.close()

    def _apply(self, store: InfluxStore, raw_s: int, hourly_s: int, *, copy: bool) -> None:
        """Policies first; then, if the previous default holds points, copy them, switch, copy the tail.

        Copying before the switch keeps the scheduler from downsampling a half-copied ``"raw"`` (it
        waits while ``"raw"`` is not the default); the hub writes to the old default until the
        switch, so the hours since the copy began are copied once more after it.
        """
        outcome = retention.ensure_retention(store, raw_s, hourly_s)
        statements = outcome.statements
        previous = outcome.held_back
        if previous and copy:
            began = timezone.now()
            self.stdout.write(
                f"copying the last {retention.influxql_duration(raw_s)} of {previous!r} into 'raw'…"
            )
            written = retention.copy_into_raw(store, previous, began, raw_s)
            statements += retention.ensure_retention(store, raw_s, hourly_s, switch_default=True).statements
            written += retention.copy_into_raw(
                store, previous, timezone.now(), raw_s, since=began - dt.timedelta(hours=1)
            )
            self.stdout.write(f"{written} points copied; {previous!r} is left as it was (drop it when done)")
        elif previous:
            statements += retention.ensure_retention(store, raw_s, hourly_s, switch_default=True).statements
        for statement in statements:
            self.stdout.write(statement)

    def _downsample(self, store: InfluxStore, since: dt.datetime | None) -> None:
        keep_s = retention.policies(store).get(retention.HOURLY, retention.Policy("", 0, False)).duration_s
        now = timezone.now()
        total = 0
        while True:
            written, until = retention.downsample(store, now, since=since, keep_s=keep_s)
            total += written
            since = None  # from the progress mark on
            if until >= retention.last_complete_hour(now):
                break
        self.stdout.write(f"{total} hourly points written")

    def _show(self, store: InfluxStore, raw_s: int, hourly_s: int) -> None:
        found = retention.policies(store)
        wanted = {retention.RAW: raw_s, retention.HOURLY: hourly_s}
        for policy in found.values():
            note = " (default)" if policy.default else ""
            if policy.name in wanted and wanted[policy.name] != policy.duration_s:
                note += f" — configured {retention.influxql_duration(wanted[policy.name])}: run --apply"
            self.stdout.write(f"{policy.name}: {retention.influxql_duration(policy.duration_s)}{note}")
        missing = [name for name in wanted if name not in found]
        if missing or not found.get(retention.RAW, retention.Policy("", 0, False)).default:
            self.stdout.write(
                f"not set up yet ({', '.join(missing) or 'raw is not the default'}): run --apply"
            )
        if retention.HOURLY in found:
            until = retention.progress(store)
            done = dt.datetime.fromtimestamp(until / 1000, dt.UTC).isoformat() if until else "not started"
            self.stdout.write(f"downsampled until: {done}")


def _date(text: str) -> dt.datetime:
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--from {text!r} is not a date (YYYY-MM-DD)") from None
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
