"""Who may schedule and run training sessions, and which trainings a lab may schedule.

A lab's **managers** (and network administrators, who manage every lab) and its **trainers**
(:class:`~fablab.trainings.models.Trainer`, a role a manager gives for their lab) schedule, edit
and cancel the lab's sessions and mark attendance. Only managers give and remove the trainer role.
A lab schedules its own trainings and the network-wide ones (``Training.lab`` empty), never
another lab's. Every function answers "no" for anonymous and inactive users.
"""

from __future__ import annotations

from django.db.models import Q, QuerySet

from fablab.labs.models import Lab
from fablab.members import roles
from fablab.members.models import Training

from .models import Trainer


def _signed_in(user) -> bool:
    return bool(user is not None and getattr(user, "is_authenticated", False) and user.is_active)


def is_trainer(user, lab: Lab | int) -> bool:
    if not _signed_in(user):
        return False
    lab_id = lab if isinstance(lab, int) else lab.pk
    return Trainer.objects.filter(lab_id=lab_id, member=user).exists()


def may_run(user, lab: Lab | int) -> bool:
    """Whether ``user`` may schedule, edit, cancel sessions in ``lab`` and mark their attendance."""
    return roles.manages_lab(user, lab) or is_trainer(user, lab)


def run_labs(user) -> QuerySet[Lab]:
    """The labs ``user`` manages or trains in, by name."""
    if not _signed_in(user):
        return Lab.objects.none()
    if roles.is_network_admin(user):
        return Lab.objects.order_by("name")
    return Lab.objects.filter(Q(managers=user) | Q(trainers__member=user)).distinct().order_by("name")


def lab_trainings(lab: Lab | int) -> QuerySet[Training]:
    """The trainings ``lab`` may schedule: its own and the network-wide ones."""
    lab_id = lab if isinstance(lab, int) else lab.pk
    return Training.objects.filter(Q(lab__isnull=True) | Q(lab_id=lab_id)).order_by("name")


def may_grant_by_attendance(user, session) -> bool:
    """Whether marking ``user``'s attendance in ``session`` may grant its training: ``user`` runs the
    session's lab and the training is that lab's own or network-wide."""
    return may_run(user, session.lab_id) and session.training.lab_id in (None, session.lab_id)
