"""Translated data (django-modeltranslation): Series's title in nl/fr/en."""

from modeltranslation.translator import TranslationOptions, register

from fablab.booking.models import Series


@register(Series)
class SeriesTranslationOptions(TranslationOptions):
    fields = ("title",)
