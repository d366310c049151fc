"""Signals the booking app sends so that the machine side can follow it without being imported here.

``booking`` never imports ``devices``; ``devices`` listens (``devices.apps``) and, for instance,
brings a machine's interlock to its wanted state the moment a booking is checked in, or closes the
fault members reported once a manager puts the machine back in service.
"""

from __future__ import annotations

from django.dispatch import Signal

#: Sent after the transaction that changed a booking commits.
#: Arguments: ``booking_id``, ``machine_id``, ``change`` — one of :data:`CHANGES`.
booking_changed = Signal()

CHANGES = ("created", "cancelled", "approved", "checked_in", "no_show", "unavailable", "completed")

#: Sent after the transaction in which a lab manager ended a machine's out-of-service time early
#: (:func:`fablab.booking.out_of_service.back_in_service`) commits; once per machine, however many
#: windows ended. Arguments: ``machine_id``, ``at`` (the moment it is back in service), ``by`` (the manager).
machine_back_in_service = Signal()
