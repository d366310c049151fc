"""Translated data: machine types, trainings, initiatives and workshops are named in nl/fr/en."""

from __future__ import annotations

import pytest
from django.test import Client
from django.utils import translation

from fablab.labs.models import MachineType
from fablab.members.models import Training
from tests.factories import LabFactory, MachineFactory, TrainingFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_a_name_given_without_a_language_fills_every_language():
    kind = MachineType.objects.create(slug="lasers", name="Laser cutter")
    assert (kind.name_en, kind.name_nl, kind.name_fr) == ("Laser cutter",) * 3


def test_each_language_reads_its_own_name_and_an_empty_one_falls_back_to_english():
    kind = MachineType.objects.create(slug="lasers", name_en="Laser cutter", name_fr="Découpeuse laser")
    with translation.override("fr"):
        assert MachineType.objects.get(pk=kind.pk).name == "Découpeuse laser"
    with translation.override("nl"):
        assert MachineType.objects.get(pk=kind.pk).name == "Laser cutter"


def test_a_french_member_sees_the_machine_type_and_the_training_in_french():
    training = TrainingFactory(name_en="Laser cutter safety", name_fr="Sécurité de la découpeuse laser")
    kind = MachineType.objects.create(slug="lasers", name_en="Laser cutter", name_fr="Découpeuse laser")
    machine = MachineFactory(machine_type=kind, required_training=training)
    member = UserFactory(language="fr")
    client = Client()
    client.force_login(member)
    page = client.get(f"/labs/{machine.lab.slug}/").content.decode()
    assert "Découpeuse laser" in page
    page = client.get(f"/labs/{machine.lab.slug}/{machine.slug}/").content.decode()
    assert "Sécurité de la découpeuse laser" in page
    assert Training.objects.get(pk=training.pk).name_en == "Laser cutter safety"


def test_the_lab_is_unchanged(settings):
    # Lab names are proper names: not translated.
    assert not hasattr(LabFactory(), "name_fr")
