"""Demo scenes for open doors (``seed_demo`` plays them once): training sessions, a weekly course, an
initiative.

* **An initiative** — "Young makers" in the demo programme, so members can opt in on their profile and
  sessions and workshops can carry it.
* **Laser safety sessions** — the next two open days at 10:00, two hours, 6 seats, on the Epilog laser
  (or the next free day): ``newbie`` finds them from the laser's page ("You need Laser cutter safety:
  next sessions…") and registers in one click; a manager marks attendance, which certifies.
* **A weekly course** — "Printing for beginners", every Tuesday 18:00–21:00 for eight weeks on both
  Prusa printers, tagged "Young makers": planned, and booked where it does not clash (clashes, the
  lab's closures too, skipped).

Everything goes through the services (sessions hold their machines, the course's bookings are workshop
bookings under the same integrity guarantee); a refusal skips that piece with a log line.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.utils import timezone

from fablab.booking import series
from fablab.booking.errors import BookingError
from fablab.booking.models import Series
from fablab.labs.models import Machine
from fablab.members.models import Programme, Training
from fablab.trainings import services as trainings
from fablab.trainings.models import Initiative, TrainingSession

log = logging.getLogger(__name__)

INITIATIVE = ("young-makers", "Young makers", "Jonge makers", "Jeunes makers")
#: The programme's second initiative; the demo's history (:mod:`fablab.demo.history`) fills its workshops.
WOMEN_IN_TECH = ("women-in-tech", "Women in tech", "Vrouwen in tech", "Femmes dans la tech")
SESSION_MACHINE, SESSION_TRAINING = "epilog-laser", "laser-safety"
COURSE_TITLE = ("Printing for beginners", "3D-printen voor beginners", "Impression 3D pour débutants")
COURSE_MACHINES = ("prusa-mk4-1", "prusa-mk4-2")


def initiative(programme_name: str) -> Initiative | None:
    """The "Young makers" initiative (made with the programme's others, see :func:`initiatives`)."""
    return initiatives(programme_name).get(INITIATIVE[0])


def initiatives(programme_name: str) -> dict[str, Initiative]:
    """The demo programme's initiatives by slug (none without the programme); idempotent."""
    programme = Programme.objects.filter(name=programme_name).first()
    if programme is None:
        return {}
    made = {}
    for slug, en, nl, fr in (INITIATIVE, WOMEN_IN_TECH):
        made[slug] = Initiative.objects.update_or_create(
            slug=slug, defaults={"programme": programme, "name_en": en, "name_nl": nl, "name_fr": fr}
        )[0]
    return made


def training_sessions(machines: dict[str, Machine], manager, now: dt.datetime) -> int:
    """Two upcoming laser safety sessions, unless some are already ahead; returns how many were made."""
    machine = machines.get(SESSION_MACHINE)
    training = Training.objects.filter(slug=SESSION_TRAINING).first()
    if machine is None or training is None:
        return 0
    if TrainingSession.objects.filter(training=training, start__gt=now, cancelled_at=None).exists():
        return 0
    made, day = 0, timezone.localdate(now, timezone=machine.lab.tz)
    for _ in range(14):
        day += dt.timedelta(days=1)
        start = dt.datetime.combine(day, dt.time(10), tzinfo=machine.lab.tz)
        try:
            trainings.session_create(
                training=training,
                lab=machine.lab,
                machines=[machine],
                start=start,
                end=start + dt.timedelta(hours=2),
                seats=6,
                by=manager,
                now=now,
            )
        except BookingError as exc:
            log.debug("demo: no laser safety session on %s: %s", day, exc.code)
            continue
        made += 1
        if made == 2:
            break
    return made


def weekly_course(
    machines: dict[str, Machine], manager, tag: Initiative | None, now: dt.datetime
) -> Series | None:
    """The Tuesday evening course on the two Prusas for eight weeks, unless it exists; clashes skipped."""
    printers = [machines[slug] for slug in COURSE_MACHINES if slug in machines]
    if not printers or Series.objects.filter(title_en=COURSE_TITLE[0]).exists():
        return None
    lab = printers[0].lab
    first = timezone.localdate(now, timezone=lab.tz) + dt.timedelta(days=1)
    recurrence = series.Recurrence(
        series.weekly_rule([1], count=8), first, dt.time(18), dt.timedelta(hours=3)
    )
    try:
        the_plan = series.plan(
            lab=lab,
            machines=printers,
            recurrence=recurrence,
            title=COURSE_TITLE[0],
            seats=8,
            target_group="12–16",
            initiative=tag,
            now=now,
            suggest=False,
        )
        result = series.create_workshop(
            the_plan, {c.key: series.SKIP for c in the_plan.conflicts}, manager, now=now
        )
    except BookingError as exc:
        log.info("demo: the weekly course was not planned: %s", exc.code)
        return None
    Series.objects.filter(pk=result.series.pk).update(
        title_en=COURSE_TITLE[0], title_nl=COURSE_TITLE[1], title_fr=COURSE_TITLE[2]
    )
    return result.series
