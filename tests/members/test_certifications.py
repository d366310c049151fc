"""Granting and revoking trainings: who may, never for oneself, always audited, no partial search."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from fablab.members.models import Certification, CertificationAudit
from fablab.members.services import CertificationError, certification_grant, certification_revoke
from tests.factories import (
    CertificationFactory,
    LabFactory,
    MachineFactory,
    ProgrammeFactory,
    TrainingFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

PAGE = reverse("booking:certifications")


@pytest.fixture
def training():
    return TrainingFactory(name="Laser safety", validity_days=365)


@pytest.fixture
def lab(training):
    lab = LabFactory(slug="centre")
    MachineFactory(lab=lab, required_training=training)
    return lab


@pytest.fixture
def manager(lab):
    user = UserFactory(username="manon", email="manon@example.org")
    lab.managers.add(user)
    return user


def revoke_url(cert) -> str:
    return reverse("booking:revoke_certification", args=[cert.pk])


def test_every_grant_and_revocation_leaves_an_audit_row(client, manager, training):
    ines = UserFactory(username="ines", first_name="Ines", last_name="Inez")
    client.force_login(manager)
    client.post(PAGE, {"member": "ines", "training": training.pk, "reason": "Passed the course on 3 May"})
    cert = Certification.objects.get(member=ines)
    client.post(revoke_url(cert), {"reason": "Unsafe use of the air assist"})

    grant, revoke = CertificationAudit.objects.order_by("pk")
    assert (grant.action, grant.actor, grant.member, grant.training, grant.certification) == (
        "grant",
        manager,
        ines,
        training,
        cert,
    )
    assert grant.reason == "Passed the course on 3 May"
    assert grant.expires_at == cert.expires_at is not None
    assert (revoke.action, revoke.actor, revoke.member, revoke.certification) == (
        "revoke",
        manager,
        ines,
        cert,
    )
    assert revoke.reason == "Unsafe use of the air assist"
    cert.refresh_from_db()
    assert revoke.at == cert.revoked_at
    # The manager's page shows both, with who did it and why.
    html = client.get(PAGE).content.decode()
    audit = html.split("Grants and revocations")[1]
    assert audit.count('class="audit-grant"') == 1 and audit.count('class="audit-revoke"') == 1
    assert "Unsafe use of the air assist" in audit and "Passed the course on 3 May" in audit
    assert "Ines Inez" in audit and "manon" in audit


def test_a_revocation_twice_keeps_the_first_and_one_audit_row(manager, training):
    cert = CertificationFactory(training=training)
    certification_revoke(certification=cert, by=manager)
    first = Certification.objects.get(pk=cert.pk).revoked_at
    with pytest.raises(CertificationError) as refused:
        certification_revoke(certification=cert, by=manager)
    assert refused.value.code == "already_revoked"
    assert Certification.objects.get(pk=cert.pk).revoked_at == first
    assert CertificationAudit.objects.filter(action="revoke").count() == 1


def test_a_manager_cannot_grant_themselves_a_certification(client, manager, training):
    client.force_login(manager)
    for name in ("manon", "manon@example.org"):
        response = client.post(PAGE, {"member": name, "training": training.pk})
        assert response.status_code == 200
        assert "You cannot grant or revoke your own certification" in response.content.decode()
    with pytest.raises(CertificationError) as refused:
        certification_grant(member=manager, training=training, by=manager)
    assert refused.value.code == "own_certification"
    assert not Certification.objects.exists()
    assert not CertificationAudit.objects.exists()


def test_a_manager_cannot_revoke_their_own_certification(client, manager, training):
    own = CertificationFactory(member=manager, training=training)
    client.force_login(manager)
    html = client.get(PAGE).content.decode()
    assert f'action="{revoke_url(own)}"' not in html  # no button for it
    response = client.post(revoke_url(own), follow=True)
    assert "You cannot grant or revoke your own certification" in response.content.decode()
    own.refresh_from_db()
    assert own.revoked_at is None
    assert not CertificationAudit.objects.exists()


def test_a_superuser_cannot_grant_or_revoke_their_own_certification_either(lab, training):
    admin = UserFactory(is_superuser=True, is_staff=True)
    with pytest.raises(CertificationError) as refused:
        certification_grant(member=admin, training=training, by=admin)
    assert refused.value.code == "own_certification"
    own = CertificationFactory(member=admin, training=training)
    with pytest.raises(CertificationError) as refused:
        certification_revoke(certification=own, by=admin)
    assert refused.value.code == "own_certification"
    # Someone else's, they may.
    other = certification_grant(member=UserFactory(), training=training, by=admin)
    assert other.granted_by == admin


def test_a_training_no_machine_of_the_managers_labs_needs_cannot_be_granted(manager):
    unused = TrainingFactory(name="Sewing")
    elsewhere = TrainingFactory(name="Welding")
    MachineFactory(lab=LabFactory(), required_training=elsewhere)
    admin = UserFactory(is_superuser=True)
    member = UserFactory()
    for by, training in ((manager, unused), (manager, elsewhere), (admin, unused)):
        with pytest.raises(CertificationError) as refused:
            certification_grant(member=member, training=training, by=by)
        assert refused.value.code == "forbidden"
    assert not Certification.objects.exists()
    assert not CertificationAudit.objects.exists()


def test_an_officer_or_a_maker_can_grant_nothing(client, lab, training):
    officer = UserFactory()
    ProgrammeFactory(labs=[lab], officers=[officer])
    member = UserFactory(username="ines")
    for by in (officer, UserFactory()):
        with pytest.raises(CertificationError) as refused:
            certification_grant(member=member, training=training, by=by)
        assert refused.value.code == "forbidden"
        client.force_login(by)
        assert client.post(PAGE, {"member": "ines", "training": training.pk}).status_code == 403
    assert not Certification.objects.exists()


def test_inactive_members_and_past_expiries_are_refused(manager, training):
    gone = UserFactory(is_active=False)
    with pytest.raises(CertificationError) as refused:
        certification_grant(member=gone, training=training, by=manager)
    assert refused.value.code == "inactive_member"
    with pytest.raises(CertificationError) as refused:
        certification_grant(
            member=UserFactory(),
            training=training,
            by=manager,
            expires_at=timezone.now() - dt.timedelta(days=1),
        )
    assert refused.value.code == "expiry_in_past"
    assert not Certification.objects.exists()
    assert not CertificationAudit.objects.exists()


def test_a_failing_audit_write_rolls_the_grant_back(manager, training, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(CertificationAudit.objects, "create", broken)
    with pytest.raises(RuntimeError):
        certification_grant(member=UserFactory(), training=training, by=manager)
    assert not Certification.objects.exists()


def test_the_certification_page_has_no_partial_email_search(client, manager, training):
    ines = UserFactory(username="ines", email="ines.intern@example.org", first_name="Ines")
    joe = UserFactory(username="joe", email="joe@example.org", first_name="Joe")
    for member in (ines, joe):
        CertificationFactory(member=member, training=training)
    client.force_login(manager)

    html = client.get(PAGE).content.decode()
    assert 'name="q"' not in html
    # The old search parameter is ignored: everyone is still listed.
    html = client.get(PAGE, {"q": "ines"}).content.decode()
    assert "(ines)" in html and "(joe)" in html
    assert 'class="error"' not in html
    # Part of an address finds no one, and says so.
    for partial in ("ines.intern@", "intern", "example.org", "INES.INTERN@EXAMPLE"):
        html = client.get(PAGE, {"member": partial}).content.decode()
        assert "No member has this username or email address." in html, partial
    # The whole address (any case) or the username shows just that member.
    for exact in ("Ines.Intern@Example.org", "ines"):
        html = client.get(PAGE, {"member": exact}).content.decode()
        assert "(ines)" in html and "(joe)" not in html, exact
    # Granting needs the exact member too.
    response = client.post(PAGE, {"member": "ines.intern", "training": training.pk})
    assert "No member has this username or email address." in response.content.decode()
