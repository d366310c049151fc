"""The members of the demo history: who they are, what they declared, what they were trained on.

Each member has a home lab, the machine types they use, the day they joined (members join faster as the
year goes on: the labs grow), sometimes a day they stopped coming, and a weight (a few regulars book
most of the time, as in every lab). Their self-declared statistics are opt-in: about 60 % agreed, and of
those most answered some questions and skipped others ("prefer not to say" is the empty answer).

A member books a machine that needs a training only once certified: members who joined before the
history are certified from before it (granted by nobody, like the demo's own makers); the others
register for the next training session after joining, come (or miss it and take the next one), and are
certified at its end. :meth:`Crowd.pick` chooses who books a slot among those who may, never someone
already busy elsewhere at that time.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from collections import defaultdict

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password

from fablab.booking.models import WorkshopRegistration
from fablab.labs.models import Machine
from fablab.members.models import Certification, CertificationAudit, MemberProfile
from fablab.reports.definitions import age_band
from fablab.trainings.models import InitiativeParticipation, Registration

PREFIX = "hist-"
FIRST = (
    "Emma", "Lucas", "Louise", "Noah", "Olivia", "Adam", "Mila", "Arthur", "Lina", "Nathan", "Sofia", "Elias",
    "Nora", "Jules", "Yasmine", "Victor", "Amira", "Finn", "Zoë", "Mohamed", "Lotte", "Thomas", "Inès", "Sam",
)  # fmt: skip
LAST = (
    "Peeters", "Janssens", "Maes", "Jacobs", "Dubois", "Lambert", "El Amrani", "Claes", "Willems", "Dupont",
    "Mertens", "Martin", "Goossens", "Benali", "Wouters", "Leroy", "De Smet", "Simon", "Nowak", "Costa",
)  # fmt: skip
#: kind: weight, ages, user category choices, machine types (type: probability)
KINDS = {
    "child": (4, (10, 12), ("school-group",), {}),
    "teen": (10, (13, 17), ("school-group", "individual", "individual"), {"3d-printer": 0.8, "laser-cutter": 0.3}),
    "student": (28, (18, 25), ("student",), {"3d-printer": 0.75, "laser-cutter": 0.6, "cnc": 0.2}),
    "adult": (38, (26, 50), ("individual",) * 5 + ("association",), {"3d-printer": 0.7, "laser-cutter": 0.55, "cnc": 0.2}),
    "pro": (12, (26, 60), ("company", "company", "association"), {"3d-printer": 0.6, "laser-cutter": 0.6, "cnc": 0.5}),
    "senior": (8, (51, 74), ("individual",), {"3d-printer": 0.7, "laser-cutter": 0.4, "cnc": 0.15}),
}  # fmt: skip


@dataclasses.dataclass
class Person:
    user: object
    kind: str
    lab: str
    types: tuple[str, ...]
    joined: dt.date
    leaves: dt.date | None
    weight: float
    gender: str
    #: training id → when certified.
    certified: dict[int, dt.datetime] = dataclasses.field(default_factory=dict)
    busy: dict[dt.date, list] = dataclasses.field(default_factory=lambda: defaultdict(list))

    def present(self, day: dt.date) -> bool:
        return self.joined <= day and (self.leaves is None or day < self.leaves)


class Crowd:
    """The history's members and what they did outside the machine sweep (trainings, workshops)."""

    def __init__(self, rng: random.Random, people: list[Person], first_day: dt.date, trainings: dict):
        self.rng, self.people, self.first_day = rng, people, first_day
        #: machine type slug → the training its machines need (None: none needed).
        self.trainings = trainings
        self.registrations: dict[int, list[Registration]] = defaultdict(list)
        self.workshop_registrations: dict[int, list[WorkshopRegistration]] = defaultdict(list)
        self.certifications: list[Certification] = []
        self._eligible: dict[tuple, tuple[list, list]] = {}

    # ------------------------------------------------------------------------------------ picking

    def pick(self, machine: Machine, start: dt.datetime, end: dt.datetime):
        """A member who may use ``machine`` then and is free, weighted by habit and home lab; or None."""
        day = start.astimezone(machine.lab.tz).date()
        key = (machine.machine_type.slug, machine.lab.slug, day)
        if key not in self._eligible:  # members certified before that day, present, using that type
            training = self.trainings.get(machine.machine_type.slug)
            midnight = dt.datetime.combine(day, dt.time(), tzinfo=machine.lab.tz)
            people = [
                p
                for p in self.people
                if key[0] in p.types
                and p.present(day)
                and (
                    training is None or (training.pk in p.certified and p.certified[training.pk] <= midnight)
                )
            ]
            self._eligible[key] = (people, [p.weight * (4 if p.lab == key[1] else 0.6) for p in people])
        people, weights = self._eligible[key]
        if not people:
            return None
        for person in self.rng.choices(people, weights=weights, k=4):
            busy = person.busy[day]
            if all(e <= start or end <= s for s, e in busy):
                busy.append((start, end))
                return person.user
        return None

    # ---------------------------------------------------------------------------------- trainings

    def train(self, sessions: list) -> None:
        """Newcomers register for the next session of each training they need, and mostly come."""
        rng = self.rng
        by_training: dict[int, list] = defaultdict(list)
        for session in sorted(sessions, key=lambda s: s.start):
            by_training[session.training_id].append(session)
        for person in sorted(self.people, key=lambda p: p.joined):
            for type_slug in person.types:
                training = self.trainings.get(type_slug)
                if training is None or training.pk in person.certified:
                    continue
                if person.joined < self.first_day:  # certified before the history
                    at = dt.datetime.combine(person.joined, dt.time(15), tzinfo=dt.UTC)
                    self._certify(person, training, at, None)
                    continue
                ready = dt.datetime.combine(
                    person.joined + dt.timedelta(days=rng.randint(2, 12)), dt.time(), tzinfo=dt.UTC
                )
                options = [s for s in by_training[training.pk] if s.start >= ready]
                home = [s for s in options[:4] if s.lab.slug == person.lab]
                for session in (home or options)[:1] + options:
                    taken = self.registrations[id(session)]
                    if len(taken) >= session.seats or any(r.member == person.user for r in taken):
                        continue
                    came = rng.random() > 0.08
                    reg = Registration(
                        member=person.user,
                        status=Registration.Status.REGISTERED,
                        created_at=max(session.start - dt.timedelta(days=rng.uniform(1, 10)), ready),
                        attended=came,
                        marked_by=session.created_by,
                        marked_at=session.end,
                    )
                    taken.append(reg)
                    if came:
                        reg.certification = self._certify(person, training, session.end, session.created_by)
                        break

    def _certify(self, person: Person, training, at: dt.datetime, by) -> Certification:
        person.certified[training.pk] = at
        cert = Certification(
            member=person.user,
            training=training,
            granted_by=by,
            granted_at=at,
            expires_at=at + dt.timedelta(days=training.validity_days) if training.validity_days else None,
        )
        self.certifications.append(cert)
        return cert

    def write_certifications(self, manager) -> None:
        Certification.objects.bulk_create(self.certifications, batch_size=2000)
        CertificationAudit.objects.bulk_create(
            (
                CertificationAudit(
                    actor=c.granted_by,
                    member=c.member,
                    training=c.training,
                    certification=c,
                    action=CertificationAudit.Action.GRANT,
                    at=c.granted_at,
                    expires_at=c.expires_at,
                    reason="Attended the training session" if c.granted_by else "Demo history",
                )
                for c in self.certifications
            ),
            batch_size=2000,
        )

    # ---------------------------------------------------------------------------------- workshops

    def attend_workshop(self, series, start: dt.datetime, tag: str | None) -> None:
        rng, day = self.rng, start.date()
        if tag == "young-makers":
            pool = [p for p in self.people if p.kind in ("child", "teen") and p.present(day)]
        elif tag == "women-in-tech":
            pool = [p for p in self.people if p.gender in ("woman", "another") and p.present(day)]
        else:
            pool = [p for p in self.people if p.present(day)]
        count = min(len(pool), round(series.seats * rng.uniform(0.4, 1.0)))
        for person in rng.sample(pool, count):
            cancelled = rng.random() < 0.05
            self.workshop_registrations[id(series)].append(
                WorkshopRegistration(
                    series=series,
                    occurrence_start=start,
                    member=person.user,
                    status=WorkshopRegistration.Status.CANCELLED
                    if cancelled
                    else WorkshopRegistration.Status.REGISTERED,
                    attended=None if cancelled else rng.random() < 0.87,
                    registered_at=start - dt.timedelta(days=rng.uniform(1, 14)),
                )
            )


def _profile_fields() -> set[str]:
    return {f.name for f in MemberProfile._meta.get_fields()}


def make(rng: random.Random, first_day: dt.date, end_day: dt.date, machines, initiatives, now) -> Crowd:
    """Create the members, their profiles and declared initiatives; returns the :class:`Crowd`."""
    days = (end_day - first_day).days + 1
    labs = sorted({m.lab.slug for m in machines})
    home_weights = [3 if i == 0 else 2 for i in range(len(labs))]
    kinds = list(KINDS)
    trainings = {}
    for machine in machines:
        trainings.setdefault(machine.machine_type.slug, machine.required_training)
    people, users, profiles, declared = [], [], [], []
    fields = _profile_fields()
    User = get_user_model()
    for n in range(rng.randint(150, 190)):
        kind = rng.choices(kinds, weights=[KINDS[k][0] for k in kinds])[0]
        _w, (young, old), categories, wanted = KINDS[kind]
        age = rng.randint(young, old)
        gender = rng.choices(("woman", "man", "another"), weights=(40, 56, 4))[0]
        types = tuple(t for t, p in wanted.items() if rng.random() < p)
        if kind != "child" and not types and rng.random() < 0.5:
            types = ("3d-printer",)
        if rng.random() < 0.45:  # already a member when the history starts
            joined = first_day - dt.timedelta(days=rng.randint(10, 300))
        else:  # joins ever faster as the labs grow
            joined = first_day + dt.timedelta(days=int(days * rng.random() ** 0.6))
        leaves = joined + dt.timedelta(days=rng.randint(60, 300)) if rng.random() < 0.18 else None
        first, last = rng.choice(FIRST), rng.choice(LAST)
        user = User(
            username=f"{PREFIX}{n + 1:04d}",
            first_name=first,
            last_name=last,
            email=f"{PREFIX}{n + 1:04d}@example.org",
            password=make_password(None),
            date_joined=dt.datetime.combine(joined, dt.time(12), tzinfo=dt.UTC),
        )
        users.append(user)
        people.append(
            Person(user, kind, rng.choices(labs, weights=home_weights)[0], types, joined, leaves,
                   rng.lognormvariate(0, 0.9), gender)
        )  # fmt: skip
        profiles.append(_profile(rng, fields, kind, age, gender, categories, now))
    User.objects.bulk_create(users, batch_size=1000)
    for user, profile in zip(users, profiles, strict=True):
        profile.user, profile.member_number = user, f"{user.pk:05d}"
    MemberProfile.objects.bulk_create(profiles, batch_size=1000)
    for person in people:
        joined_at = dt.datetime.combine(max(person.joined, first_day), dt.time(12), tzinfo=dt.UTC)
        if person.kind in ("child", "teen") and "young-makers" in initiatives and rng.random() < 0.55:
            declared.append((person, initiatives["young-makers"], joined_at))
        if person.gender == "woman" and "women-in-tech" in initiatives and rng.random() < 0.2:
            declared.append((person, initiatives["women-in-tech"], joined_at))
    InitiativeParticipation.objects.bulk_create(
        InitiativeParticipation(member=p.user, initiative=i, joined_at=at) for p, i, at in declared
    )
    return Crowd(rng, people, first_day, trainings)


def _profile(rng, fields: set[str], kind: str, age: int, gender: str, categories, now) -> MemberProfile:
    """Opt-in statistics: about 60 % agreed; of those, most answered, some chose "prefer not to say"."""
    profile = MemberProfile(language=rng.choice(("nl", "fr", "fr", "en")))
    if rng.random() >= 0.6:
        return profile
    values = {"statistics_consent": True}
    if rng.random() < 0.93:
        values["gender"] = gender
    birth_year = now.year - age - rng.randint(0, 1)
    if "birth_year" in fields and rng.random() < 0.65:
        values["birth_year"] = birth_year
    elif rng.random() < 0.6:
        values["age_band"] = age_band(birth_year, now.year)
    if rng.random() < 0.88:
        values["user_category"] = rng.choice(categories)
    for name, value in values.items():
        if name in fields:
            setattr(profile, name, value)
    return profile
