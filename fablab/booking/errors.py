"""Why a booking request was refused: one machine-readable code per rule.

The codes are part of the public API (``{"code", "detail"}`` bodies) and are
listed in the OpenAPI description; the messages are translated.
"""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _

#: code -> (HTTP status, translated message)
RULES: dict[str, tuple[int, object]] = {
    "invalid_range": (400, _("The end must be after the start.")),
    "not_bookable": (400, _("This machine cannot be booked.")),
    "not_certified": (403, _("You need the training for this machine before you can book it.")),
    "certification_expired": (
        403,
        _("Your certification for this machine has expired (or expires before the end of this booking)."),
    ),
    "in_past": (400, _("This time has already passed.")),
    "too_soon": (400, _("This machine must be booked further in advance.")),
    "too_far_ahead": (400, _("This machine cannot be booked that far ahead.")),
    "bad_granularity": (400, _("Bookings must start and end on the machine's slot boundaries.")),
    "too_short": (400, _("This booking is shorter than the machine's minimum duration.")),
    "too_long": (400, _("This booking is longer than the machine's maximum duration.")),
    "lab_closed": (400, _("The lab is closed on that day.")),
    "outside_opening_hours": (400, _("The booking is not within the lab's opening hours.")),
    "maintenance": (409, _("The machine is planned for maintenance at that time.")),
    "slot_taken": (409, _("Someone else has already booked this time.")),
    "already_booked_by_you": (409, _("You already have a booking for this time.")),
    "quota_exceeded": (409, _("This booking would exceed your weekly hours for this type of machine.")),
    "too_many_bookings": (
        409,
        _("You already have the maximum number of upcoming bookings for this type of machine."),
    ),
    "not_cancellable": (409, _("This booking can no longer be cancelled.")),
    "not_pending": (409, _("Only bookings awaiting approval can be approved or declined.")),
    "forbidden": (403, _("You are not allowed to do this.")),
    "check_in_too_early": (409, _("Check-in for this booking has not opened yet.")),
    "check_in_closed": (409, _("This booking can no longer be checked in.")),
    "no_show_blocked": (
        403,
        _("Because of missed bookings you cannot make new bookings in this lab for a while."),
    ),
    "machine_out_of_service": (409, _("This machine is out of service at that time.")),
    "not_checked_in": (409, _("Only a booking that is checked in can be finished.")),
    "offer_not_open": (409, _("This offer is no longer open.")),
    "already_waiting": (409, _("You are already on the waitlist for this time.")),
    "not_waivable": (409, _("This booking does not count as a strike, or its strike was already waived.")),
    # Accounts (fablab.members.accounts).
    "guardian_consent_needed": (
        403,
        _("Members under 13 need a parent's or guardian's consent before booking; a lab manager records it."),
    ),
    "membership_pending": (
        403,
        _("This lab approves new members before their first booking; ask to join on the lab's page."),
    ),
    "series_invalid_rule": (400, _("This recurrence cannot be used: check the days, the times and the end.")),
    "series_too_long": (400, _("This series has too many occurrences; end it earlier.")),
    "series_empty": (400, _("This series has no occurrence ahead.")),
    "series_unresolved": (
        400,
        _("Choose for every conflict whether to skip the occurrence or move the booking."),
    ),
    "series_conflict": (
        409,
        _("Something changed on these machines since the plan was made: review the conflicts again."),
    ),
    "series_cannot_move": (
        409,
        _("There is no free time to move a member's booking to: skip that occurrence."),
    ),
    "no_occurrence": (404, _("This workshop has no such session.")),
    "workshop_full": (409, _("This session is full.")),
    "already_in_workshop": (409, _("You are already registered for this workshop session.")),
    # Training sessions (fablab.trainings).
    "prerequisite_missing": (
        403,
        _("You need the prerequisite trainings of this session before you can register."),
    ),
    "session_cancelled": (409, _("This training session has been cancelled.")),
    "session_started": (409, _("This training session has already started.")),
    "session_not_started": (409, _("Attendance can be marked once the session has started.")),
    "already_registered": (409, _("You are already registered for this session (or on its waitlist).")),
    "not_registered": (409, _("This member is not registered for this session.")),
    "machine_busy": (409, _("A machine of this session is already taken at that time.")),
    "training_not_for_lab": (400, _("This training belongs to another lab.")),
    "machine_not_in_lab": (400, _("Every machine of the session must belong to the session's lab.")),
    "seats_below_registered": (
        409,
        _("More members are already registered than this number of seats; cancel registrations first."),
    ),
}


class BookingError(Exception):
    """A booking rule was broken; ``code`` names the rule (see ``RULES``)."""

    def __init__(self, code: str, detail: str | None = None) -> None:
        if code not in RULES:
            raise ValueError(f"unknown booking error code {code!r}")
        self.code = code
        self.status, message = RULES[code]
        self.detail = str(detail or message)
        super().__init__(f"{code}: {self.detail}")
