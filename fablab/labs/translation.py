"""Translated data (django-modeltranslation): MachineType's name in nl/fr/en."""

from modeltranslation.translator import TranslationOptions, register

from fablab.labs.models import MachineType


@register(MachineType)
class MachineTypeTranslationOptions(TranslationOptions):
    fields = ("name",)
