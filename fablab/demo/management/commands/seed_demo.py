"""Load the demo network: two Brussels labs, their machines, trainings and users.

Idempotent: running it again updates the demo objects in place and never
duplicates them. The lab and machine slugs are the ones the demo bridge
configurations use (firmware_bridge/demo/).
"""

from __future__ import annotations

import datetime as dt
import time
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core.management.base import BaseCommand
from django.db import transaction
from django.test.utils import override_settings
from django.utils import timezone

from devices import live
from fablab.booking.errors import BookingError
from fablab.booking.models import Booking, QuotaPolicy
from fablab.booking.services import booking_create
from fablab.demo import history, open_doors, scenes, story
from fablab.demo import machines as demo_machines
from fablab.labs.models import Closure, Lab, Machine, MachineType, OpeningHours
from fablab.members.models import Certification, CertificationAudit, MemberProfile, Programme, Training

PASSWORD = "demo1234"  # noqa: S105 - the documented demo password

TYPES = [
    ("3d-printer", "3D printer"),
    ("laser-cutter", "Laser cutter"),
    ("cnc", "CNC machine"),
    ("other", "Other"),
]
#: The demo's translated data (django-modeltranslation): names in Dutch and French by English name.
NAMES = {
    "3D printer": ("3D-printer", "Imprimante 3D"),
    "Laser cutter": ("Lasersnijder", "Découpeuse laser"),
    "CNC machine": ("CNC-freesmachine", "Fraiseuse CNC"),
    "Other": ("Andere", "Autre"),
    "3D printing basics": ("Basis 3D-printen", "Bases de l'impression 3D"),
    "Laser cutter safety": ("Veiligheid lasersnijder", "Sécurité de la découpeuse laser"),
    "CNC router safety": ("Veiligheid CNC-frees", "Sécurité de la fraiseuse CNC"),
}


def translated(name: str, field: str = "name") -> dict[str, str]:
    """``{field}_en/_nl/_fr`` for a demo name (English everywhere when it has no translation)."""
    nl, fr = NAMES.get(name, (name, name))
    return {f"{field}_en": name, f"{field}_nl": nl, f"{field}_fr": fr}


#: What the interlock does at a booking's end: a print may finish, a laser or a router stops.
END_ACTIONS = {"3d-printer": "finish", "laser-cutter": "stop", "cnc": "stop", "other": "stop"}
#: Machines anyone may start without a booking (the others raise an "unbooked" alert).
WALK_INS = {"prusa-mk4-2", "ultimaker-s3"}
#: The demo makers' kiosk PIN and the maker's badge (documented in the README).
KIOSK_PIN = "1234"
BADGES = {"maker": "04A1B2C3"}

TRAININGS = [
    ("3d-printing", "3D printing basics", None, "3d-printer"),
    ("laser-safety", "Laser cutter safety", 365, "laser-cutter"),
    ("cnc-safety", "CNC router safety", 365, "cnc"),
]

T = dt.time
LABS = [
    {
        "slug": "bxl-centre",
        "name": "FabLab Brussels Centre",
        "address": "Rue de la Loi 1\n1000 Bruxelles",
        # Long hours every day (members come in with their badge), so that whenever `make run` is
        # started the demo has bookings under way: check-ins, jobs, no-shows, walk-ins.
        "hours": [(d, T(7), T(23, 30)) for d in range(7)],
    },
    {
        "slug": "bxl-south",
        "name": "FabLab Brussels South",
        "address": "Avenue Clemenceau 2\n1070 Anderlecht",
        # Weekdays office hours, a late Thursday, a short Saturday.
        "hours": [(d, T(9), T(17, 30)) for d in (0, 1, 2, 4)] + [(3, T(9), T(21)), (5, T(10), T(16))],
    },
]

# slug, lab, name, type, model, policy overrides
MACHINES = [
    (
        "prusa-mk4-1",
        "bxl-centre",
        "Prusa MK4 #1",
        "3d-printer",
        "Original Prusa MK4",
        {"max_duration_minutes": 480},
    ),
    (
        "prusa-mk4-2",
        "bxl-centre",
        "Prusa MK4 #2",
        "3d-printer",
        "Original Prusa MK4",
        {"max_duration_minutes": 480},
    ),
    (
        "co2-laser",
        "bxl-centre",
        "CO2 laser 60 W",
        "laser-cutter",
        "GRBL CO2 laser 600×400",
        {"max_duration_minutes": 180, "buffer_minutes": 15, "min_notice_minutes": 60},
    ),
    (
        "cnc-router",
        "bxl-centre",
        "CNC router",
        "cnc",
        "GRBL router 1000×1000",
        {
            "slot_minutes": 60,
            "min_duration_minutes": 60,
            "max_duration_minutes": 240,
            "buffer_minutes": 30,
            "approval_required": True,
        },
    ),
    (
        "epilog-laser",
        "bxl-centre",
        "Epilog Zing",
        "laser-cutter",
        "Epilog Zing 24",
        {"max_duration_minutes": 120, "buffer_minutes": 15},
    ),
    (
        "ultimaker-s3",
        "bxl-south",
        "Ultimaker S3",
        "3d-printer",
        "Ultimaker S3",
        {"max_duration_minutes": 480},
    ),
    (
        "diode-laser",
        "bxl-south",
        "Diode laser",
        "laser-cutter",
        "GRBL 10 W diode laser",
        {"max_duration_minutes": 120},
    ),
    (
        "shapeoko",
        "bxl-south",
        "Shapeoko",
        "cnc",
        "Shapeoko 4 XXL",
        {"slot_minutes": 60, "min_duration_minutes": 60, "max_duration_minutes": 240, "buffer_minutes": 30},
    ),
    (
        "trotec-laser",
        "bxl-south",
        "Trotec Speedy",
        "laser-cutter",
        "Trotec Speedy 300",
        {"max_duration_minutes": 180, "buffer_minutes": 15, "approval_required": True},
    ),
]

#: The programme funding both demo labs; the demo officer oversees them.
PROGRAMME = "Brussels makerspaces programme"

QUOTAS = [("3d-printer", Decimal("20"), 8), ("laser-cutter", Decimal("6"), 3), ("cnc", Decimal("8"), 2)]

USERS = [
    # username, first name, email, language, certified, manager, officer
    ("maker", "Mila", "maker@example.org", "en", True, False, False),
    ("newbie", "Noah", "newbie@example.org", "fr", False, False, False),
    ("manager", "Marie", "manager@example.org", "nl", True, True, False),
    ("officer", "Olivier", "officer@example.org", "fr", False, False, True),
    ("anouk", "Anouk", "anouk@example.org", "nl", True, False, False),
    ("karim", "Karim", "karim@example.org", "fr", True, False, False),
]


class Command(BaseCommand):
    help = "Create or update the demo labs, machines, trainings and users (password demo1234)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--history-days",
            type=int,
            default=0,
            help="Also generate this many days of past activity, once (make run: 400). Default: none.",
        )
        parser.add_argument("--seed", type=int, default=12, help="Seed of the generated history.")

    def handle(self, *args, **options):
        with transaction.atomic():
            labs = self._labs()
            types = {
                slug: MachineType.objects.update_or_create(
                    slug=slug, defaults={**translated(name), "default_end_action": END_ACTIONS[slug]}
                )[0]
                for slug, name in TYPES
            }
            trainings = {}
            for slug, name, validity, type_slug in TRAININGS:
                trainings[type_slug] = Training.objects.update_or_create(
                    slug=slug, defaults={**translated(name), "validity_days": validity}
                )[0]
            machines = {}
            for slug, lab_slug, name, type_slug, model, policy in MACHINES:
                defaults = {
                    "name": name,
                    "machine_type": types[type_slug],
                    "model": model,
                    "bookable": True,
                    "required_training": trainings.get(type_slug),
                    "slot_minutes": 30,
                    "min_duration_minutes": 30,
                    "max_duration_minutes": 240,
                    "min_notice_minutes": 0,
                    "max_days_ahead": 28,
                    "buffer_minutes": 0,
                    "approval_required": False,
                    "walk_ins_allowed": slug in WALK_INS,
                    # Printers run overnight: bookable outside the opening hours too.
                    "bookable_around_the_clock": type_slug == "3d-printer",
                    **policy,
                }
                machines[slug] = Machine.objects.update_or_create(
                    lab=labs[lab_slug], slug=slug, defaults=defaults
                )[0]
            for type_slug, hours, upcoming in QUOTAS:
                QuotaPolicy.objects.update_or_create(
                    machine_type=types[type_slug],
                    lab=None,
                    defaults={"max_hours_per_week": hours, "max_future_bookings": upcoming},
                )
            users = self._users(labs, trainings)
            open_doors.initiatives(PROGRAMME)
        # The history's machines have their bridges, links and plugs (its sessions have energy where a plug
        # measures it), and it is written before today's scenes, whose past times it leaves free.
        bridges = demo_machines.seed()
        past = history.generate(options["history_days"], options["seed"], rollups=False)
        if not past.get("skipped"):
            self.stdout.write(
                f"demo history: {past['first_day']} to {past['last_day']}, {past['members']} members, "
                f"{past['member_bookings']} bookings, {past['sessions']} sessions ({past['seconds']} s)"
            )
        # The demo's own bookings need no emails. No board is open while the demo is seeded (and `make run` starts Redis later): the live pushes
        # its bookings cause go to an in-process layer instead of failing against a Redis not yet up.
        with override_settings(
            EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
            CHANNEL_LAYERS={"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}},
        ):
            self._bookings(machines, users)
            story.seed_days(machines, users, trainer=users["manager"])
            now = timezone.now()
            scenes.strike(machines, users, now)
            scenes.care(machines, users, now)
            scenes.waitlist_offer(machines, users, now)
            tag = open_doors.initiative(PROGRAMME)
            open_doors.training_sessions(machines, users["manager"], now)
            open_doors.weekly_course(machines, users["manager"], tag, now)
            live.flush(timeout=10)  # what those pushes queued leaves before the real layer is back
        if not past.get("skipped"):
            # The rollups of every day since the history began: the scenes' past rows included, and the days
            # an older demo database had lived through after the history's end.
            started = time.monotonic()
            yesterday = timezone.localdate(timezone=next(iter(labs.values())).tz) - dt.timedelta(days=1)
            rolled = history.roll_up(past["first_day"], yesterday)
            if rolled is not None:
                self.stdout.write(f"demo history rolled up in {time.monotonic() - started:.1f} s")
        self.stdout.write(f"demo bridges: {', '.join(bridges)}")
        self.stdout.write(
            f"demo ready: {len(labs)} labs, {len(machines)} machines, users {', '.join(u[0] for u in USERS)}"
        )

    def _labs(self) -> dict[str, Lab]:
        labs = {}
        for spec in LABS:
            lab, _created = Lab.objects.update_or_create(
                slug=spec["slug"],
                # A waitlist offer held an hour (default 15 min), so the demo's is still there when you look.
                defaults={
                    "name": spec["name"],
                    "address": spec["address"],
                    "time_zone": "Europe/Brussels",
                    "waitlist_hold_minutes": 60,
                },
            )
            lab.opening_hours.all().delete()
            OpeningHours.objects.bulk_create(
                OpeningHours(lab=lab, weekday=d, opens=o, closes=c) for d, o, c in spec["hours"]
            )
            year = timezone.localdate().year
            Closure.objects.update_or_create(
                lab=lab,
                starts_on=dt.date(year, 12, 24),
                defaults={"ends_on": dt.date(year + 1, 1, 1), "reason": "Winter holidays"},
            )
            labs[lab.slug] = lab
        return labs

    def _users(self, labs, trainings):
        User = get_user_model()
        users = {}
        for username, first, email, language, certified, manager, officer in USERS:
            user, created = User.objects.get_or_create(
                username=username, defaults={"first_name": first, "email": email}
            )
            if created:
                user.set_password(PASSWORD)
            # Nobody in the demo is a network administrator: the manager does
            # everything on the manager pages, and the Django admin is not for them.
            user.is_staff = user.is_superuser = False
            user.save()
            # Only a new profile gets the demo language: a language the member chose stays.
            profile, _created = MemberProfile.objects.get_or_create(
                user=user, defaults={"language": language}
            )
            if username in story.MAKERS and not profile.kiosk_pin:
                profile.kiosk_pin = make_password(KIOSK_PIN)
                profile.badge_number = BADGES.get(username, profile.badge_number)
                profile.save(update_fields=["kiosk_pin", "badge_number"])
            if manager:
                for lab in labs.values():
                    lab.managers.add(user)
            if officer:
                programme, _created = Programme.objects.get_or_create(name=PROGRAMME)
                programme.labs.add(*labs.values())
                programme.officers.add(user)
            if certified:
                for training in trainings.values():
                    if not Certification.objects.active().filter(member=user, training=training).exists():
                        expires = (
                            timezone.now() + dt.timedelta(days=training.validity_days)
                            if training.validity_days
                            else None
                        )
                        cert = Certification.objects.create(
                            member=user, training=training, granted_by=None, expires_at=expires
                        )
                        # Granted by nobody, yet audited like every grant.
                        CertificationAudit.objects.create(
                            actor=None,
                            member=user,
                            training=training,
                            certification=cert,
                            action=CertificationAudit.Action.GRANT,
                            at=cert.granted_at,
                            expires_at=expires,
                            reason="Demo data",
                        )
            users[username] = user
        return users

    def _bookings(self, machines, users) -> None:
        """A few bookings by other makers, so the week views are not empty.

        Made again only once the previous ones are over, so a demo started weeks
        later still shows a busy week, and a second run the same day adds nothing.
        """
        if Booking.objects.filter(
            member__username__in=("anouk", "karim"), status__in=Booking.ACTIVE, end__gt=timezone.now()
        ).exists():
            return
        lab_tz = next(iter(machines.values())).lab.tz
        today = timezone.localdate(timezone=lab_tz)
        plans = [
            ("anouk", "prusa-mk4-1", 1, T(14), 3, "Prototype enclosure"),
            ("karim", "co2-laser", 2, T(16), 2, "Plywood lamp"),
            ("anouk", "ultimaker-s3", 3, T(10), 4, "Replacement parts"),
            ("karim", "shapeoko", 4, T(13), 2, "Oak cutting board"),
        ]
        for username, machine_slug, days, at, hours, purpose in plans:
            machine = machines[machine_slug]
            for shift in range(0, 10):  # the next day the lab is open at that hour
                day = today + dt.timedelta(days=days + shift)
                start = dt.datetime.combine(day, at, tzinfo=lab_tz)
                try:
                    booking_create(
                        machine=machine,
                        member=users[username],
                        start=start,
                        end=start + dt.timedelta(hours=hours),
                        purpose=purpose,
                    )
                    break
                except BookingError:
                    continue
