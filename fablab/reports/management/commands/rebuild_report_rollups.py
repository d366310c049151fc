"""``python manage.py rebuild_report_rollups [--from YYYY-MM-DD] [--to YYYY-MM-DD] [--lab SLUG]``.

Rebuilds the report rollups (machine-days and member-days, :mod:`fablab.reports.rollup`) for a range of
local days; by default from the day of the first booking or usage session to today. The scheduler keeps
yesterday and today current; this is for the rest: after an import, a change of opening hours or
closures in the past, a corrected status history, or a new definition. Safe to run again: the days are
replaced, never added to.
"""

from __future__ import annotations

import datetime as dt

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Min
from django.utils import timezone

from devices.models import UsageSession
from fablab.booking.models import Booking
from fablab.labs.models import Lab
from fablab.reports import rollup


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise CommandError(f"not a date (YYYY-MM-DD): {text}") from exc


class Command(BaseCommand):
    help = "Rebuild the programme reports' daily rollups for a range of days (default: all history)."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--from", dest="first", help="first local day, YYYY-MM-DD (default: first activity)"
        )
        parser.add_argument("--to", dest="last", help="last local day, YYYY-MM-DD (default: today)")
        parser.add_argument("--lab", help="only this lab (its slug)")

    def handle(self, *args, **options) -> None:
        now = timezone.now()
        labs = list(Lab.objects.all())
        if options["lab"]:
            labs = [lab for lab in labs if lab.slug == options["lab"]]
            if not labs:
                raise CommandError(f"no lab with the slug {options['lab']!r}")
        today = max((timezone.localtime(now, lab.tz).date() for lab in labs), default=now.date())
        last = _date(options["last"]) if options["last"] else today
        first = _date(options["first"]) if options["first"] else self._first_activity(labs)
        if first is None:
            self.stdout.write("Nothing to rebuild: no bookings or usage sessions yet.")
            return
        if first > last:
            raise CommandError("--from is after --to")
        done = rollup.rebuild(first, last, labs=labs, now=now)
        self.stdout.write(
            f"Rebuilt {first} to {last} in {len(labs)} lab(s): {done['machine_days']} machine-days and "
            f"{done['member_days']} member-days written in {done['seconds']:.1f} s."
        )

    @staticmethod
    def _first_activity(labs: list[Lab]) -> dt.date | None:
        lab_ids = [lab.pk for lab in labs]
        firsts = [
            Booking.objects.filter(machine__lab_id__in=lab_ids).aggregate(at=Min("start"))["at"],
            UsageSession.objects.filter(machine__lab_id__in=lab_ids).aggregate(at=Min("started_at"))["at"],
        ]
        firsts = [at for at in firsts if at is not None]
        return (min(firsts) - dt.timedelta(days=1)).date() if firsts else None
