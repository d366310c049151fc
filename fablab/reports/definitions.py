"""Every figure a report can show, spelled once: its tidy ``metric`` name, unit, REPORTS id, where it may
appear, and the plain-language definition shown next to it on every page and in every export.

The disclosure control (:mod:`fablab.reports.disclosure`) reads the ``kind`` of each metric:

* ``equipment`` — about a machine's time only (M1, M2 and the downtime hours): always shown;
* ``machine`` — booking and use figures (M3–M12): shown at lab, type and network level; at machine level
  only under rule 5 (≥ 3 distinct users, or none; 1–2 users: utilisation in 25-point bands);
* ``people`` — counts of distinct people and figures derived from them (P1–P11): rule 3 (≥ 10 people);
* ``people_hours`` — hours split by a personal attribute (P8, P11): rules 3 and 4 (dominance).

:data:`RATIOS` names the two figures each percentage (or kWh per used hour) is computed from, once for
every reader: the machine metrics compute it from them, the disclosure control protects the three
together (any two give the third away) and the pages print the two beside it.

``additive`` says the figure adds up over machines (machine ⊂ type ⊂ lab ⊂ network) and over time
(month ⊂ quarter ⊂ year), which is what secondary suppression protects.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.utils.translation import gettext_lazy as _

HOURS, PERCENT, COUNT, KWH, KWH_PER_H, FLAG = "h", "%", "count", "kWh", "kWh/h", "flag"

ALL_LEVELS = ("network", "lab", "machine_type", "machine")
NO_MACHINE = ("network", "lab", "machine_type")
ALL_GRAINS = ("month", "quarter", "year")


@dataclass(frozen=True)
class Metric:
    name: str
    ref: str
    unit: str
    kind: str
    definition: object  # a lazy translation
    label: object
    levels: tuple[str, ...] = ALL_LEVELS
    grains: tuple[str, ...] = ALL_GRAINS
    additive: bool = False


METRICS: dict[str, Metric] = {
    m.name: m
    for m in [
        # --- machine metrics (describe equipment) ---------------------------------------------------
        Metric(
            "open_hours",
            "M1",
            HOURS,
            "equipment",
            _(
                "Hours inside the machine's bookable window: the lab's opening hours, or the whole day for a machine bookable around the clock."
            ),
            _("Open hours"),
            additive=True,
        ),
        Metric(
            "planned_downtime_hours",
            "M1",
            HOURS,
            "equipment",
            _("Planned maintenance, closures and planned out-of-service time inside the open hours."),
            _("Planned downtime"),
            additive=True,
        ),
        Metric(
            "net_available_hours",
            "M1",
            HOURS,
            "equipment",
            _("Open hours minus planned downtime: the time the machine was meant to be available."),
            _("Net available hours"),
            additive=True,
        ),
        Metric(
            "unplanned_downtime_hours",
            "M2",
            HOURS,
            "equipment",
            _(
                "Time within the net available hours in which the machine was offline, in error or out of service after a breakdown."
            ),
            _("Unplanned downtime"),
            additive=True,
        ),
        Metric(
            "availability",
            "M2",
            PERCENT,
            "equipment",
            _("Share of the net available hours in which the machine was not down unexpectedly."),
            _("Availability"),
        ),
        Metric(
            "booked_hours",
            "M3",
            HOURS,
            "machine",
            _(
                "Hours of member bookings not cancelled before their start, at their original times (a no-show's time stays booked), within the net available hours."
            ),
            _("Booked hours"),
            additive=True,
        ),
        Metric(
            "released_hours",
            "M3",
            HOURS,
            "machine",
            _(
                "Of the booked hours, the time no-shows and early finishes gave back for others to book; it stays counted as booked."
            ),
            _("Released hours"),
            additive=True,
        ),
        Metric(
            "booking_utilisation",
            "M3",
            PERCENT,
            "machine",
            _("Booked hours as a share of the net available hours."),
            _("Booking utilisation"),
        ),
        Metric(
            "used_hours",
            "M4",
            HOURS,
            "machine",
            _("Hours the machine ran a job (with or without a booking), within the net available hours."),
            _("Used hours"),
            additive=True,
        ),
        Metric(
            "usage_utilisation",
            "M4",
            PERCENT,
            "machine",
            _(
                "Used hours as a share of the net available hours; unplanned downtime stays in the denominator."
            ),
            _("Usage utilisation"),
        ),
        Metric(
            "busy_hours",
            "M5",
            HOURS,
            "machine",
            _("The part of the used hours in which the machine was running (not paused or idle)."),
            _("Busy hours"),
            additive=True,
        ),
        Metric(
            "busy_share",
            "M5",
            PERCENT,
            "machine",
            _("Busy hours as a share of the used hours."),
            _("Busy share"),
        ),
        Metric(
            "realised_hours",
            "M6",
            HOURS,
            "machine",
            _("Used hours that fell inside the booking windows of member bookings."),
            _("Used within bookings"),
            additive=True,
        ),
        Metric(
            "booking_realisation",
            "M6",
            PERCENT,
            "machine",
            _("Used hours inside booking windows as a share of the booked hours."),
            _("Booking realisation"),
        ),
        Metric(
            "bookings_kept",
            "M7",
            COUNT,
            "machine",
            _("Member bookings not cancelled before their start."),
            _("Bookings kept"),
            levels=NO_MACHINE,
            additive=True,
        ),
        Metric(
            "no_shows",
            "M7",
            COUNT,
            "machine",
            _("Member bookings nobody checked in to (and the machine did not run)."),
            _("No-shows"),
            levels=NO_MACHINE,
            additive=True,
        ),
        Metric(
            "no_show_rate",
            "M7",
            PERCENT,
            "machine",
            _("No-shows as a share of the bookings kept."),
            _("No-show rate"),
            levels=NO_MACHINE,
        ),
        Metric(
            "bookings_made",
            "M8",
            COUNT,
            "machine",
            _("Member bookings starting in the period, cancelled or not."),
            _("Bookings made"),
            levels=NO_MACHINE,
            additive=True,
        ),
        Metric(
            "late_cancellations",
            "M8",
            COUNT,
            "machine",
            _(
                "Member bookings cancelled less than the lab's late-cancellation notice (24 hours by default) before their start."
            ),
            _("Late cancellations"),
            levels=NO_MACHINE,
            additive=True,
        ),
        Metric(
            "late_cancellation_rate",
            "M8",
            PERCENT,
            "machine",
            _("Late cancellations as a share of the bookings made."),
            _("Late cancellation rate"),
            levels=NO_MACHINE,
        ),
        Metric(
            "walk_in_hours",
            "M9",
            HOURS,
            "machine",
            _("Used hours of sessions that belong to no booking."),
            _("Walk-in hours"),
            levels=NO_MACHINE,
            additive=True,
        ),
        Metric(
            "walk_in_share",
            "M9",
            PERCENT,
            "machine",
            _(
                "Walk-in hours as a share of the used hours (time past a booking's end is overrun, not walk-in)."
            ),
            _("Walk-in share"),
            levels=NO_MACHINE,
        ),
        Metric(
            "jobs_with_outcome",
            "M10",
            COUNT,
            "machine",
            _("Jobs that ended finished, failed, cancelled or interrupted."),
            _("Jobs ended"),
            levels=NO_MACHINE,
            additive=True,
        ),
        Metric(
            "jobs_finished",
            "M10",
            COUNT,
            "machine",
            _("Jobs that ended finished."),
            _("Jobs finished"),
            levels=NO_MACHINE,
            additive=True,
        ),
        Metric(
            "job_completion",
            "M10",
            PERCENT,
            "machine",
            _("Jobs finished as a share of the jobs that ended."),
            _("Job completion"),
            levels=NO_MACHINE,
        ),
        Metric(
            "overrun_hours",
            "M11",
            HOURS,
            "machine",
            _("Time machines kept running past the end of the booking their session belongs to."),
            _("Overrun hours"),
            levels=NO_MACHINE,
            additive=True,
        ),
        Metric(
            "energy",
            "M12",
            KWH,
            "machine",
            _("Energy the machines drew during their sessions, from their meters."),
            _("Energy"),
            additive=True,
        ),
        Metric(
            "energy_per_used_hour",
            "M12",
            KWH_PER_H,
            "machine",
            _("Energy per used hour, over the sessions that had a meter reading."),
            _("Energy per used hour"),
        ),
        Metric(
            "training_hours",
            "",
            HOURS,
            "equipment",
            _("Hours the machine was held for training sessions (not member bookings)."),
            _("Training hours"),
            additive=True,
        ),
        Metric(
            "workshop_hours",
            "",
            HOURS,
            "equipment",
            _("Hours the machine was held for workshops and courses (not member bookings)."),
            _("Workshop hours"),
            additive=True,
        ),
        Metric(
            "maintenance_hours",
            "",
            HOURS,
            "equipment",
            _("Hours the machine was held for maintenance bookings."),
            _("Maintenance bookings"),
            additive=True,
        ),
        Metric(
            "bookable_around_the_clock",
            "",
            FLAG,
            "equipment",
            _("1 when the machine is bookable around the clock (its open hours are the whole day), else 0."),
            _("Bookable around the clock"),
            levels=("machine",),
        ),
        # --- people metrics --------------------------------------------------------------------------
        Metric(
            "active_makers",
            "P1",
            COUNT,
            "people",
            _(
                "Distinct members with a checked-in booking or a machine session tied to one. Network figures count each member once, however many labs they used."
            ),
            _("Active makers"),
            levels=("network", "lab"),
        ),
        Metric(
            "new_makers",
            "P2",
            COUNT,
            "people",
            _("Active makers whose first activity anywhere in the network falls in the period."),
            _("New makers"),
            levels=("network", "lab"),
        ),
        Metric(
            "returning_makers",
            "P3",
            COUNT,
            "people",
            _("Makers active both in the period and in the period before."),
            _("Returning makers"),
            levels=("lab",),
            grains=("quarter", "year"),
        ),
        Metric(
            "returning_rate",
            "P3",
            PERCENT,
            "people",
            _("Returning makers as a share of the makers active in the period before."),
            _("Returning rate"),
            levels=("lab",),
            grains=("quarter", "year"),
        ),
        Metric(
            "visits",
            "P4",
            COUNT,
            "people",
            _(
                "Distinct member, lab and day combinations with any activity (a booking, a session, a training or a workshop)."
            ),
            _("Visits"),
            levels=NO_MACHINE,
        ),
        Metric(
            "median_hours_per_maker",
            "P5",
            HOURS,
            "people",
            _("The middle value of the used hours per active maker (half used more, half less)."),
            _("Median hours per maker"),
            levels=("lab",),
            grains=("quarter", "year"),
        ),
        Metric(
            "certifications_granted",
            "P6",
            COUNT,
            "people",
            _("Certifications granted because the member attended a training session."),
            _("Certifications granted"),
            levels=("network", "lab"),
        ),
        Metric(
            "trainees",
            "P6",
            COUNT,
            "people",
            _("Distinct members who attended a training session."),
            _("Trainees"),
            levels=("network", "lab"),
        ),
        Metric(
            "trainees_using_within_90_days",
            "P7",
            COUNT,
            "people",
            _("Trainees who used a machine needing that training within 90 days of the session."),
            _("Trainees using within 90 days"),
            levels=("lab",),
            grains=("year",),
        ),
        Metric(
            "training_to_use",
            "P7",
            PERCENT,
            "people",
            _(
                "Trainees who used a machine needing that training within 90 days, as a share of the trainees."
            ),
            _("Training to use"),
            levels=("lab",),
            grains=("year",),
        ),
        Metric(
            "makers",
            "P8–P11",
            COUNT,
            "people",
            _(
                "Active makers in the category (self-declared; members who did not declare count as not declared)."
            ),
            _("Makers"),
            levels=("network", "lab"),
        ),
        Metric(
            "declared_coverage",
            "P9–P10",
            PERCENT,
            "people",
            _("Active makers who declared the attribute, as a share of all active makers."),
            _("Declared"),
            levels=("network", "lab"),
        ),
        Metric(
            "category_hours",
            "P8, P11",
            HOURS,
            "people_hours",
            _("Used hours of the makers in the category."),
            _("Used hours"),
            levels=("lab",),
            grains=("quarter", "year"),
        ),
        Metric(
            "participants",
            "P11",
            COUNT,
            "people",
            _("Distinct members in the initiative's trainings, workshops and bookings."),
            _("Participants"),
            levels=("lab",),
            grains=("quarter", "year"),
        ),
        Metric(
            "declared_participants",
            "P11",
            COUNT,
            "people",
            _("Active makers who declared they take part in the initiative."),
            _("Declared participants"),
            levels=("lab",),
            grains=("quarter", "year"),
        ),
    ]
}


@dataclass(frozen=True)
class Ratio:
    """A figure computed from two others of the same key: ``part`` over ``whole``, each summed over the
    period and place first (an average of daily ratios would weigh a short day like a long one).

    ``whole`` is ``None`` when the denominator is no published figure of the same key: the hours of the
    sessions with a meter reading (kWh per used hour), the makers of the period before (returning rate).
    """

    part: str
    whole: str | None
    #: The figure is the share of the whole the part leaves: availability is the net available hours
    #: *without* unplanned downtime, while the figure published beside it is the downtime.
    complement: bool = False


#: Every percentage (and kWh per used hour) → the two figures it is computed from.
RATIOS: dict[str, Ratio] = {
    "availability": Ratio("unplanned_downtime_hours", "net_available_hours", complement=True),
    "booking_utilisation": Ratio("booked_hours", "net_available_hours"),
    "usage_utilisation": Ratio("used_hours", "net_available_hours"),
    "busy_share": Ratio("busy_hours", "used_hours"),
    "booking_realisation": Ratio("realised_hours", "booked_hours"),
    "no_show_rate": Ratio("no_shows", "bookings_kept"),
    "late_cancellation_rate": Ratio("late_cancellations", "bookings_made"),
    "walk_in_share": Ratio("walk_in_hours", "used_hours"),
    "job_completion": Ratio("jobs_finished", "jobs_with_outcome"),
    "energy_per_used_hour": Ratio("energy", None),
    "returning_rate": Ratio("returning_makers", None),
    "training_to_use": Ratio("trainees_using_within_90_days", "trainees"),
}

#: The breakdowns (``dimension``) and the grid each may appear on (disclosure rule 7: one demographic per
#: table, only lab × quarter or network × month; never crossed with machine, time of day or another one).
DIMENSIONS = {
    "gender": {"label": _("Gender"), "demographic": True, "grid": {("lab", "quarter"), ("network", "month")}},
    "age_band": {
        "label": _("Age band"),
        "demographic": True,
        "grid": {("lab", "quarter"), ("network", "month")},
    },
    "user_category": {
        "label": _("User category"),
        "demographic": True,
        "grid": {("lab", "quarter"), ("lab", "year")},
    },
    "initiative": {
        "label": _("Initiative"),
        "demographic": True,
        "grid": {("lab", "quarter"), ("lab", "year")},
    },
    "training": {"label": _("Training"), "demographic": False, "grid": None},
    "weekday_hour": {"label": _("Weekday and hour"), "demographic": False, "grid": None},
}

#: Categories of the demographic dimensions, in display order; "" is "not declared".
GENDERS = {"woman": _("Woman"), "man": _("Man"), "another": _("Another gender"), "": _("Not declared")}
AGE_BANDS = {
    "under-13": _("Under 13"),
    "13-17": _("13 to 17"),
    "18-25": _("18 to 25"),
    "26-35": _("26 to 35"),
    "36-50": _("36 to 50"),
    "51+": _("51 and over"),
    "": _("Not declared"),
}
USER_CATEGORIES = {
    "individual": _("Individual"),
    "student": _("Student"),
    "company": _("Company"),
    "association": _("Association"),
    "school-group": _("School group"),
    "": _("Not declared"),
}


def age_band(birth_year: int | None, year: int) -> str:
    """The P10 band of someone born in ``birth_year`` during ``year`` (their age at their birthday that
    year, the only age a birth year gives); "" without a birth year."""
    if not birth_year:
        return ""
    age = year - birth_year
    if age < 13:
        return "under-13"
    if age < 18:
        return "13-17"
    if age <= 25:
        return "18-25"
    if age <= 35:
        return "26-35"
    if age <= 50:
        return "36-50"
    return "51+"
