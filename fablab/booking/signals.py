"""Signals the booking app sends so that the machine side can follow it without being imported here.

``booking`` never imports ``devices``; ``devices`` listens (``devices.apps``) and, for instance,
brings a machine's interlock to its wanted state the moment a booking is checked in.
"""

from __future__ import annotations

from django.dispatch import Signal

#: Sent after the transaction that changed a booking commits.
#: Arguments: ``booking_id``, ``machine_id``, ``change`` — one of :data:`CHANGES`.
booking_changed = Signal()

CHANGES = ("created", "cancelled", "approved", "checked_in", "no_show", "unavailable", "completed")
