"""The Django admin is for network administrators (active superusers) only."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from fablab.members.models import Certification
from tests.factories import CertificationFactory, LabFactory, MachineFactory, UserFactory

pytestmark = pytest.mark.django_db

LOGIN = reverse("admin:login")


def admin_urls(machine, cert) -> list[str]:
    return [
        reverse("admin:index"),
        reverse("admin:booking_booking_changelist"),
        reverse("admin:booking_booking_add"),
        reverse("admin:labs_lab_changelist"),
        reverse("admin:labs_machine_change", args=[machine.pk]),
        reverse("admin:members_certification_changelist"),
        reverse("admin:members_certification_change", args=[cert.pk]),
        reverse("admin:members_programme_changelist"),
        reverse("admin:devices_bridge_changelist"),
        reverse("admin:devices_powerplug_changelist"),
    ]


def test_a_staff_non_superuser_cannot_open_the_admin(client):
    machine = MachineFactory()
    cert = CertificationFactory()
    staff = UserFactory(is_staff=True)
    # Even with every model permission, and as a manager of the machine's lab.
    staff.user_permissions.add(*Permission.objects.all())
    machine.lab.managers.add(staff)
    client.force_login(staff)
    for url in admin_urls(machine, cert):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(LOGIN), url
    response = client.post(reverse("admin:members_certification_changelist"))
    assert response.status_code == 302


def test_an_inactive_superuser_cannot_open_the_admin(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True, is_active=False))
    assert client.get(reverse("admin:index")).status_code == 302


def test_a_network_administrator_opens_the_admin(client, admin_user):
    machine = MachineFactory()
    cert = CertificationFactory()
    client.force_login(admin_user)
    for url in admin_urls(machine, cert):
        assert client.get(url).status_code == 200, url
    assert client.get(reverse("admin:members_programme_add")).status_code == 200


def test_certifications_and_their_audit_are_read_only_in_the_admin(client, admin_user):
    # Grants and revocations go through the manager page, which writes the audit.
    cert = CertificationFactory()
    client.force_login(admin_user)
    assert client.get(reverse("admin:members_certification_add")).status_code == 403
    assert client.get(reverse("admin:members_certificationaudit_add")).status_code == 403
    response = client.post(
        reverse("admin:members_certification_change", args=[cert.pk]), {"revoked_at_0": "2030-01-01"}
    )
    assert response.status_code == 403
    assert client.post(reverse("admin:members_certification_delete", args=[cert.pk])).status_code == 403
    cert.refresh_from_db()
    assert cert.revoked_at is None
    assert Certification.objects.filter(pk=cert.pk).exists()


def test_the_manager_pages_do_not_need_staff_rights(client):
    lab = LabFactory(slug="centre")
    machine = MachineFactory(lab=lab)
    manager = UserFactory()
    lab.managers.add(manager)
    assert not manager.is_staff
    client.force_login(manager)
    for url in (
        reverse("booking:manage"),
        reverse("booking:approvals"),
        reverse("booking:certifications"),
        reverse("booking:day", args=["centre"]),
        reverse("booking:maintenance", args=[machine.pk]),
    ):
        assert client.get(url).status_code == 200, url
