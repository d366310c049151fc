"""Translated data (django-modeltranslation): Training's name, description in nl/fr/en."""

from modeltranslation.translator import TranslationOptions, register

from fablab.members.models import Training


@register(Training)
class TrainingTranslationOptions(TranslationOptions):
    fields = ("name", "description")
