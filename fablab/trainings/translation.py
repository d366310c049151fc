"""Translated data (django-modeltranslation): Initiative's name, description in nl/fr/en."""

from modeltranslation.translator import TranslationOptions, register

from fablab.trainings.models import Initiative


@register(Initiative)
class InitiativeTranslationOptions(TranslationOptions):
    fields = ("name", "description")
