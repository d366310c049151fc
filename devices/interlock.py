"""Interlocks that follow the bookings (being written: see issue 9)."""

from __future__ import annotations


def follow_booking(*, booking_id: int, machine_id: int, change: str) -> None:
    """Bring ``machine_id``'s interlock to its wanted state after a booking change."""
