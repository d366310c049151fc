"""Scene builders for the training tests."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone

from fablab.trainings import services
from fablab.trainings.models import Trainer
from tests.factories import LabFactory, MachineFactory, TrainingFactory, UserFactory


def day_at(lab, hour: int, days: int = 2) -> dt.datetime:
    """``days`` from today (real clock, so pages agree) at ``hour`` lab-local."""
    day = timezone.localdate(timezone=lab.tz) + dt.timedelta(days=days)
    return dt.datetime.combine(day, dt.time(hour), tzinfo=lab.tz)


def scene(*, validity_days=None, seats=2):
    """A lab with a manager, a trainer, a laser needing the lab's training, and a session of it."""
    lab = LabFactory()
    manager = UserFactory()
    lab.managers.add(manager)
    trainer = UserFactory()
    Trainer.objects.create(lab=lab, member=trainer, granted_by=manager)
    training = TrainingFactory(lab=lab, validity_days=validity_days)
    laser = MachineFactory(lab=lab, required_training=training)
    start = day_at(lab, 10)
    now = start - dt.timedelta(days=2)
    session = services.session_create(
        training=training,
        lab=lab,
        machines=[laser],
        start=start,
        end=start + dt.timedelta(hours=2),
        seats=seats,
        by=trainer,
        now=now,
    )
    return lab, manager, trainer, training, laser, session, now
