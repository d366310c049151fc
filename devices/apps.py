from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class DevicesConfig(AppConfig):
    name = "devices"
    verbose_name = _("Devices")

    def ready(self) -> None:
        # The machine side follows the bookings (booking never imports devices).
        from fablab.booking.signals import booking_changed

        from . import follow

        booking_changed.connect(follow.on_booking_changed, dispatch_uid="devices.follow")
