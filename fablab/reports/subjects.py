"""Members' pseudonyms in the report rollups (:class:`~fablab.reports.models.Subject`)."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import IntegrityError, transaction

from .models import Subject


def subjects_for(member_ids: Iterable[int]) -> dict[int, int]:
    """``{member id: subject id}`` for every given member, creating the missing pseudonyms.

    Safe when two processes create the same member's pseudonym at once: the loser reads the winner's.
    """
    wanted = {m for m in member_ids if m is not None}
    found = dict(Subject.objects.filter(member_id__in=wanted).values_list("member_id", "pk"))
    for member_id in wanted - found.keys():
        try:
            with transaction.atomic():
                found[member_id] = Subject.objects.create(member_id=member_id).pk
        except IntegrityError:
            found[member_id] = Subject.objects.get(member_id=member_id).pk
    return found


def subject_for(member_id: int) -> int:
    """The subject id (pseudonym) of one member, created if missing."""
    return subjects_for([member_id])[member_id]
