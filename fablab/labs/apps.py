from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class LabsConfig(AppConfig):
    name = "fablab.labs"
    label = "labs"
    verbose_name = _("Labs and machines")
