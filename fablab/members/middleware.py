"""Speak each signed-in member's preferred language unless they just picked another one."""

from __future__ import annotations

from django.conf import settings
from django.utils import translation


class MemberLanguageMiddleware:
    """Activate the member's saved language.

    Runs after LocaleMiddleware. The language cookie (set by the language
    switcher, which also saves the preference) wins, so a switch takes effect
    at once; otherwise a signed-in member gets their saved preference on any
    device.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if (
            user is not None
            and user.is_authenticated
            and settings.LANGUAGE_COOKIE_NAME not in request.COOKIES
        ):
            profile = getattr(user, "profile", None)
            if profile is not None and profile.language:
                translation.activate(profile.language)
                request.LANGUAGE_CODE = profile.language
        response = self.get_response(request)
        return response
