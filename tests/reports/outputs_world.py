"""A small programme world for the report output tests (service, API, exports, open data).

Two programmes: A funds labs ``a-one`` and ``a-two``, B funds ``b-one``. A year of rollups (2025, one
row per machine on the first day of each month) with figures that tell the labs apart: A's machines
are open 10 hours on those days, B's 1000, so a network total shows at once whether B leaked into A.
25 makers use ``a-one`` every month, 12 use ``a-two`` in the first quarter, 3 use ``b-one``.
The clock stands in May 2026: 2025 is a complete year, 2026 the running one.
"""

from __future__ import annotations

import datetime as dt

from fablab.reports.models import MachineDay, MemberDay, Subject
from tests.factories import LabFactory, MachineFactory, ProgrammeFactory, UserFactory, api_token

YEAR = 2025
NOW = dt.datetime(2026, 5, 15, 12, 0, tzinfo=dt.UTC)
OPEN_H = {"a-one": 10.0, "a-two": 10.0, "b-one": 1000.0}
MAKERS = {"a-one": 25, "a-two": 12, "b-one": 3}


def user(username: str):
    """A user without a usable password (hashing one costs half a second); tests log in with force_login."""
    return UserFactory(username=username, password=None)


def make_world() -> dict:
    labs = {slug: LabFactory(slug=slug, name=slug.replace("-", " ").title(), hours=False) for slug in OPEN_H}
    machines = {slug: MachineFactory(lab=lab, slug=f"{slug}-printer") for slug, lab in labs.items()}
    officer_a, officer_b = user("officer-a"), user("officer-b")
    ProgrammeFactory(name="A", labs=[labs["a-one"], labs["a-two"]], officers=[officer_a])
    ProgrammeFactory(name="B", labs=[labs["b-one"]], officers=[officer_b])
    manager = user("manager-a-two")
    labs["a-two"].managers.add(manager)
    admin = user("network-admin")
    admin.is_superuser = True
    admin.save()

    days = [dt.date(YEAR, month, 1) for month in range(1, 13)]
    MachineDay.objects.bulk_create(
        MachineDay(
            machine=machines[slug],
            day=day,
            open_h=open_h,
            booked_h=open_h / 2,
            used_h=open_h / 4,
            busy_h=open_h / 5,
            realised_h=open_h / 5,
            bookings_made=4,
            bookings_kept=3,
            no_shows=1,
            used_by_hour=[0.0] * 24,
        )
        for slug, open_h in OPEN_H.items()
        for day in days
    )
    rows = []
    for slug, count in MAKERS.items():
        months = range(1, 4) if slug == "a-two" else range(1, 13)
        for n in range(count):
            subject = Subject.objects.create()
            for month in months:
                rows.append(
                    MemberDay(
                        subject=subject,
                        lab=labs[slug],
                        machine=machines[slug],
                        day=dt.date(YEAR, month, 1),
                        kind=MemberDay.Kind.USE,
                        used_h=1.0 + n % 3,
                        gender=("woman", "man", "")[n % 3],
                        user_category=("individual", "student")[n % 2],
                    )
                )
    MemberDay.objects.bulk_create(rows)
    member = user("plain-member")
    return {
        "labs": labs,
        "machines": machines,
        "officer_a": officer_a,
        "officer_b": officer_b,
        "manager": manager,
        "admin": admin,
        "member": member,
    }


def token_for(user) -> str:
    return api_token(user)
