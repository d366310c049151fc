"""Who manages and who oversees what: the one place the platform answers it.

Three roles, nothing else:

* a **network administrator** is an active superuser. They manage every lab
  and are the only people who may open the Django admin;
* a **lab manager** is an active user listed in ``Lab.managers``. They see the
  lab's bookings in full (names included), approve, decline and cancel them,
  plan maintenance, grant and revoke the trainings the lab's machines need,
  and send commands to its machines;
* a **programme officer** is an active user listed in a
  :class:`~fablab.members.models.Programme`'s ``officers``; they oversee the
  labs that programme funds. Overseeing gives no manager right: until the
  reports exist an officer sees exactly what any member sees (their own
  bookings, nobody's name).

Every function accepts any user object, including ``AnonymousUser``, and
answers "no" (``False`` or an empty queryset) for anonymous and inactive
users. ``lab`` arguments take a :class:`~fablab.labs.models.Lab` or its
primary key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db.models import Q, QuerySet

if TYPE_CHECKING:
    from fablab.labs.models import Lab


def _lab_model():
    # Imported late: the labs models import this app's models (Training).
    from fablab.labs.models import Lab

    return Lab


def _lab_id(lab: Lab | int) -> int:
    return lab if isinstance(lab, int) else lab.pk


def _signed_in(user) -> bool:
    return bool(user is not None and getattr(user, "is_authenticated", False) and user.is_active)


def is_network_admin(user) -> bool:
    """An active superuser: manages every lab and alone may use the Django admin."""
    return _signed_in(user) and bool(user.is_superuser)


def managed_labs(user) -> QuerySet[Lab]:
    """The labs ``user`` manages (every lab for a network administrator), ordered by name."""
    Lab = _lab_model()
    if not _signed_in(user):
        return Lab.objects.none()
    if is_network_admin(user):
        return Lab.objects.order_by("name")
    return Lab.objects.filter(managers=user).order_by("name")


def manages_lab(user, lab: Lab | int) -> bool:
    """Whether ``user`` manages ``lab`` (network administrators manage every lab)."""
    if not _signed_in(user):
        return False
    if is_network_admin(user):
        return True
    return _lab_model().objects.filter(pk=_lab_id(lab), managers=user).exists()


def manages_any_lab(user) -> bool:
    """Whether ``user`` manages at least one lab, i.e. may open the manager pages at all."""
    if not _signed_in(user):
        return False
    return is_network_admin(user) or managed_labs(user).exists()


def overseen_labs(user) -> QuerySet[Lab]:
    """The labs funded by a programme ``user`` is an officer of (every lab for a network administrator)."""
    Lab = _lab_model()
    if not _signed_in(user):
        return Lab.objects.none()
    if is_network_admin(user):
        return Lab.objects.order_by("name")
    return Lab.objects.filter(programmes__officers=user).distinct().order_by("name")


def oversees_lab(user, lab: Lab | int) -> bool:
    """Whether a programme ``user`` is an officer of funds ``lab``. Grants no manager right."""
    if not _signed_in(user):
        return False
    if is_network_admin(user):
        return True
    return _lab_model().objects.filter(pk=_lab_id(lab), programmes__officers=user).exists()


def bookings_in_full(user, bookings: QuerySet) -> QuerySet:
    """``bookings`` narrowed to those ``user`` may see in full (who, what for).

    Their own bookings, and every booking of a lab they manage. ``bookings`` is
    a queryset of :class:`~fablab.booking.models.Booking` (or of a model with
    the same ``member`` and ``machine`` fields).
    """
    if not _signed_in(user):
        return bookings.none()
    if is_network_admin(user):
        return bookings
    return bookings.filter(Q(member=user) | Q(machine__lab__in=managed_labs(user).values("pk")))


def managed_bookings(user, bookings: QuerySet) -> QuerySet:
    """``bookings`` narrowed to those of the labs ``user`` manages (not their own elsewhere)."""
    if not _signed_in(user):
        return bookings.none()
    if is_network_admin(user):
        return bookings
    return bookings.filter(machine__lab__in=managed_labs(user).values("pk"))


def grantable_trainings(user) -> QuerySet:
    """Trainings ``user`` may grant and revoke: those a machine of a lab they manage needs, and that
    are that lab's own or network-wide (never another lab's training).

    A network administrator manages every lab, so may grant any training some
    machine needs; a training no machine needs cannot be granted at all.
    Nobody may grant or revoke their own certification (see
    :mod:`fablab.members.services`); that is a rule on the member, not the training.
    """
    from .models import Training

    if not _signed_in(user):
        return Training.objects.none()
    trainings = Training.objects.filter(machines__isnull=False)
    if not is_network_admin(user):
        # A lab's own training is granted by that lab's managers only; a network-wide one (lab empty)
        # by the managers of any lab whose machines need it.
        labs = managed_labs(user).values("pk")
        trainings = trainings.filter(machines__lab__in=labs).filter(Q(lab__isnull=True) | Q(lab__in=labs))
    return Training.objects.filter(pk__in=trainings.values("pk")).order_by("name")


def may_grant_training(user, training) -> bool:
    """Whether ``user`` manages a lab one of whose machines needs ``training`` (a Training or its pk)."""
    training_id = training if isinstance(training, int) else training.pk
    return grantable_trainings(user).filter(pk=training_id).exists()
