from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class DevicesConfig(AppConfig):
    name = "devices"
    verbose_name = _("Devices")

    def ready(self) -> None:
        # The machine side follows the bookings and the machines back in service (booking never imports devices).
        from fablab.booking.signals import booking_changed, machine_back_in_service

        from . import follow

        booking_changed.connect(follow.on_booking_changed, dispatch_uid="devices.follow")
        machine_back_in_service.connect(
            follow.on_back_in_service, dispatch_uid="devices.follow.back_in_service"
        )

        # A member's data export and erasure reach the machine side's rows (members never imports devices).
        from fablab.members import privacy as member_privacy

        from . import privacy

        member_privacy.register(export=privacy.export, erase=privacy.erase)
