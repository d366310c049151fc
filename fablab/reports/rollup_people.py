"""The member-days of a rollup chunk (:class:`~fablab.reports.models.MemberDay`), by pseudonym only.

Three kinds of row, one per (pseudonym, lab, machine, local day, kind, initiative, training):

* ``use`` — each checked-in member booking: on the day(s) its attributed sessions ran, or on its start
  day when it has none; ``used_h`` is those sessions' hours inside the machine's net available hours
  that day (the same clipping as the machine's used hours, so that hours split by a personal attribute
  never exceed the machine totals);
* ``training`` — each attended training registration, on the session's local start day, with the
  training and whether attending granted the certification; ``workshop`` — each attended workshop
  registration, on the occurrence's local day. Their ``used_h``: the used hours of the sessions
  attributed to the bookings that held the machines for that training session or workshop occurrence,
  divided evenly among its attendees (nobody records who stood at which machine).

Privacy: rows carry a :class:`~fablab.reports.models.Subject` (a pseudonym), never a member; a
pseudonymised booking brings its own subject. The self-declared categories are copied onto each row
only when the member gave statistics consent (else empty): gender, user category, declared initiatives
as they are when the row is built, and the age band *in the year of the activity* (from the birth year
when there is one, else the declared band).
"""

from __future__ import annotations

from collections import defaultdict

from devices.models import UsageSession
from fablab.booking.models import Booking, WorkshopRegistration
from fablab.members.models import MemberProfile
from fablab.trainings.models import InitiativeParticipation, Registration, TrainingSession

from . import intervals as iv
from .definitions import age_band
from .models import MemberDay, Subject
from .rollup import Chunk, _h, _ts, session_span
from .subjects import subjects_for

#: Who a row is about before pseudonyms are looked up: ("member", member id) or ("subject", subject id).
Who = tuple[str, int]


def member_days(chunk: Chunk, bookings: dict[int, dict], sessions: list[dict]) -> list[dict]:
    """Every member-day row of the chunk (``chunk.net`` must be filled by ``rollup.machine_days`` first)."""
    by_booking: dict[int, list[dict]] = defaultdict(list)
    for s in sessions:
        if s["booking_id"]:
            by_booking[s["booking_id"]].append(s)

    def used(booking_ids) -> dict[int, float]:
        """Used hours per day index of the sessions attributed to these bookings."""
        result: dict[int, float] = defaultdict(float)
        for booking_id in booking_ids:
            for s in by_booking.get(booking_id, ()):
                net = chunk.net.get(s["machine_id"], {})
                for i, pieces in iv.split([session_span(chunk, s)], chunk.bounds).items():
                    result[i] += iv.hours(iv.intersect(pieces, net.get(i, [])))
        return result

    rows: dict[tuple, list] = {}

    def add(who: Who, machine_id, i: int, kind: str, initiative, training, hours: float, certified=False):
        row = rows.setdefault((who, machine_id, i, kind, initiative, training), [0.0, False])
        row[0] += hours
        row[1] = row[1] or certified

    _use_rows(chunk, bookings, by_booking, used, add)
    _training_rows(chunk, used, add)
    _workshop_rows(chunk, bookings, used, add)
    return _materialise(chunk, rows)


def _use_rows(chunk: Chunk, bookings, by_booking, used, add) -> None:
    checked = [
        b
        for b in bookings.values()
        if b["kind"] == Booking.Kind.MEMBER
        and b["checked_in_at"] is not None
        and (b["member_id"] or b["subject_id"])
    ]
    # A booking whose sessions all ran outside this chunk is not a start-day row here.
    alone = [b["id"] for b in checked if b["id"] not in by_booking]
    elsewhere = (
        set(UsageSession.objects.filter(booking_id__in=alone).values_list("booking_id", flat=True))
        if alone
        else set()
    )
    for b in checked:
        who = ("subject", b["subject_id"]) if b["subject_id"] else ("member", b["member_id"])
        initiative = b["series__initiative_id"]
        if b["id"] in by_booking:
            for i, hours in used([b["id"]]).items():
                add(who, b["machine_id"], i, MemberDay.Kind.USE, initiative, None, hours)
        elif b["id"] not in elsewhere:
            i = chunk.day_index(_ts(b["start"]))
            if i is not None:
                add(who, b["machine_id"], i, MemberDay.Kind.USE, initiative, None, 0.0)


def _training_rows(chunk: Chunk, used, add) -> None:
    registrations = list(
        Registration.objects.filter(
            attended=True, session__lab=chunk.lab, session__start__gte=chunk.lo, session__start__lt=chunk.hi
        ).values(
            "member_id",
            "session_id",
            "session__start",
            "session__training_id",
            "session__initiative_id",
            "certification_id",
        )
    )
    if not registrations:
        return
    holds: dict[int, list[int]] = defaultdict(list)
    for session_id, booking_id in TrainingSession.holds.through.objects.filter(
        trainingsession_id__in={r["session_id"] for r in registrations}
    ).values_list("trainingsession_id", "booking_id"):
        holds[session_id].append(booking_id)
    attendees: dict[int, int] = defaultdict(int)
    for r in registrations:
        attendees[r["session_id"]] += 1
    hours = {session_id: sum(used(holds[session_id]).values()) for session_id in attendees}
    for r in registrations:
        i = chunk.day_index(_ts(r["session__start"]))
        if i is None:
            continue
        add(
            ("member", r["member_id"]),
            None,
            i,
            MemberDay.Kind.TRAINING,
            r["session__initiative_id"],
            r["session__training_id"],
            hours[r["session_id"]] / attendees[r["session_id"]],
            certified=r["certification_id"] is not None,
        )


def _workshop_rows(chunk: Chunk, bookings, used, add) -> None:
    registrations = list(
        WorkshopRegistration.objects.filter(
            attended=True,
            series__lab=chunk.lab,
            occurrence_start__gte=chunk.lo,
            occurrence_start__lt=chunk.hi,
        ).values("member_id", "series_id", "occurrence_start", "series__initiative_id")
    )
    if not registrations:
        return
    held: dict[tuple[int, float], list[int]] = defaultdict(list)
    for b in bookings.values():
        if b["kind"] == Booking.Kind.WORKSHOP and b["series_id"] and b["status"] != Booking.Status.CANCELLED:
            held[(b["series_id"], _ts(b["start"]))].append(b["id"])
    attendees: dict[tuple[int, float], int] = defaultdict(int)
    for r in registrations:
        attendees[(r["series_id"], _ts(r["occurrence_start"]))] += 1
    hours = {occurrence: sum(used(held[occurrence]).values()) for occurrence in attendees}
    for r in registrations:
        occurrence = (r["series_id"], _ts(r["occurrence_start"]))
        i = chunk.day_index(occurrence[1])
        if i is None:
            continue
        add(
            ("member", r["member_id"]),
            None,
            i,
            MemberDay.Kind.WORKSHOP,
            r["series__initiative_id"],
            None,
            hours[occurrence] / attendees[occurrence],
        )


def _materialise(chunk: Chunk, rows: dict[tuple, list]) -> list[dict]:
    """Pseudonyms and the consented snapshot onto each row, in a stable order."""
    member_ids = {who[1] for who, *_ in rows if who[0] == "member"}
    subject_of = {("member", m): s for m, s in subjects_for(member_ids).items()}
    given = {who[1] for who, *_ in rows if who[0] == "subject"}
    member_of: dict[int, int | None] = {s: m for (_kind, m), s in subject_of.items()}
    for subject_id, member_id in Subject.objects.filter(pk__in=given).values_list("pk", "member_id"):
        subject_of[("subject", subject_id)] = subject_id
        member_of[subject_id] = member_id
    profiles = snapshots({m for m in member_of.values() if m is not None})
    # A member's recent bookings and their pseudonymised old ones are one subject: one row.
    merged: dict[tuple, list] = {}
    for (who, *rest), (hours, certified) in rows.items():
        row = merged.setdefault((subject_of[who], *rest), [0.0, False])
        row[0] += hours
        row[1] = row[1] or certified
    result = []
    for (subject_id, machine_id, i, kind, initiative, training), (hours, certified) in sorted(
        merged.items(), key=lambda item: repr(item[0])
    ):
        day = chunk.days[i]
        profile = profiles.get(member_of.get(subject_id))
        result.append(
            {
                "subject_id": subject_id,
                "lab_id": chunk.lab.pk,
                "machine_id": machine_id,
                "day": day,
                "kind": kind,
                "initiative_id": initiative,
                "training_id": training,
                "certified": certified,
                "used_h": _h(hours),
                **snapshot(profile, day.year),
            }
        )
    return result


def snapshots(member_ids: set[int]) -> dict[int, dict]:
    """``{member id: statistics answers}`` of the members who gave statistics consent (the others: none)."""
    profiles = {
        p["user_id"]: {**p, "declared_initiatives": []}
        for p in MemberProfile.objects.filter(user_id__in=member_ids, statistics_consent=True).values(
            "user_id", "gender", "birth_year", "age_band", "user_category"
        )
    }
    for member_id, initiative_id in (
        InitiativeParticipation.objects.filter(member_id__in=profiles.keys())
        .order_by("initiative_id")
        .values_list("member_id", "initiative_id")
    ):
        profiles[member_id]["declared_initiatives"].append(initiative_id)
    return profiles


def snapshot(profile: dict | None, year: int) -> dict:
    """The categories a member-day row carries (empty without consent); the age band is the one of the
    activity's year."""
    if profile is None:
        return {"gender": "", "age_band": "", "user_category": "", "declared_initiatives": []}
    return {
        "gender": profile["gender"],
        "age_band": age_band(profile["birth_year"], year) if profile["birth_year"] else profile["age_band"],
        "user_category": profile["user_category"],
        "declared_initiatives": list(profile["declared_initiatives"]),
    }
