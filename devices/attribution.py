"""Usage sessions attributed to bookings (being written: see issue 9)."""

from __future__ import annotations


def follow_booking(*, booking_id: int, machine_id: int, change: str) -> None:
    """Attribute ``machine_id``'s sessions again after a booking change."""
