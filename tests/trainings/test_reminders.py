"""Reminders: the day before a session, 30 days before a certification expires; each sent once."""

from __future__ import annotations

import datetime as dt

import pytest

from fablab.trainings import reminders, services
from tests.factories import CertificationFactory, UserFactory

from .helpers import scene

pytestmark = pytest.mark.django_db


def test_the_session_reminder_goes_out_once_the_day_before(mailoutbox):
    _lab, _manager, _trainer, _training, _laser, session, now = scene()
    member = UserFactory()
    services.register(session=session, member=member, now=now)
    mailoutbox.clear()
    assert reminders.session_reminders(session.start - dt.timedelta(days=1, minutes=1)) == 0
    day_before = session.start - dt.timedelta(hours=20)
    assert reminders.session_reminders(day_before) == 1
    assert reminders.session_reminders(day_before + dt.timedelta(minutes=5)) == 0
    assert [m.to for m in mailoutbox] == [[member.email]]


def test_the_renewal_reminder_goes_out_once_30_days_before_expiry(mailoutbox):
    _lab, _manager, _trainer, training, _laser, _session, now = scene()
    member = UserFactory()
    cert = CertificationFactory(member=member, training=training, expires_at=now + dt.timedelta(days=40))
    assert reminders.renewal_reminders(now) == 0
    soon = cert.expires_at - dt.timedelta(days=29)
    assert reminders.scheduled_pass(soon) == 1
    assert reminders.scheduled_pass(soon + dt.timedelta(hours=1)) == 0
    assert len(mailoutbox) == 1 and training.name in mailoutbox[0].subject


def test_no_renewal_reminder_when_already_renewed(mailoutbox):
    _lab, _manager, _trainer, training, _laser, _session, now = scene()
    member = UserFactory()
    cert = CertificationFactory(member=member, training=training, expires_at=now + dt.timedelta(days=10))
    CertificationFactory(member=member, training=training, expires_at=now + dt.timedelta(days=400))
    assert reminders.renewal_reminders(cert.expires_at - dt.timedelta(days=5)) == 0
