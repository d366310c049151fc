from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class MembersConfig(AppConfig):
    name = "fablab.members"
    label = "members"
    verbose_name = _("Members and trainings")

    def ready(self) -> None:
        # Signal receivers: failed logins counted, a new password revokes the API tokens.
        from . import accounts, throttle  # noqa: F401
