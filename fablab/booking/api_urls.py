from django.urls import path, re_path, register_converter

from fablab.reports import api as reports_api
from fablab.trainings import api as training_api

from . import api, out_of_service_api, series_api, waitlist_api
from .serializers import MAX_ID


class IdConverter:
    """A row id the database can hold (at most 18 digits, below ``MAX_ID``); a longer one is no route
    (the catch-all answers 404 ``not_found``), never an overflow inside a view."""

    regex = "[0-9]{1,18}"

    def to_python(self, value: str) -> int:
        number = int(value)
        if number > MAX_ID:
            raise ValueError(value)
        return number

    def to_url(self, value: int) -> str:
        return str(value)


register_converter(IdConverter, "id")


app_name = "api"
urlpatterns = [
    path("auth/token/", api.TokenView.as_view(), name="token"),
    path("labs/", api.LabListView.as_view(), name="labs"),
    path("machines/", api.MachineListView.as_view(), name="machines"),
    path("machines/<int:pk>/", api.MachineDetailView.as_view(), name="machine"),
    path("machines/<int:pk>/availability/", api.AvailabilityView.as_view(), name="availability"),
    path(
        "machines/<int:pk>/out-of-service/",
        out_of_service_api.MachineOutOfServiceView.as_view(),
        name="machine-out-of-service",
    ),
    path(
        "machines/<int:pk>/back-in-service/",
        out_of_service_api.MachineBackInServiceView.as_view(),
        name="machine-back-in-service",
    ),
    path("bookings/", api.BookingListView.as_view(), name="bookings"),
    path("bookings/<int:pk>/", api.BookingDetailView.as_view(), name="booking"),
    path("bookings/<int:pk>/cancel/", api.BookingCancelView.as_view(), name="booking-cancel"),
    path("bookings/<int:pk>/check-in/", api.BookingCheckInView.as_view(), name="booking-check-in"),
    path("bookings/<int:pk>/finish/", api.BookingFinishView.as_view(), name="booking-finish"),
    path("bookings/<int:pk>/approve/", api.BookingApproveView.as_view(), name="booking-approve"),
    path("bookings/<int:pk>/decline/", api.BookingDeclineView.as_view(), name="booking-decline"),
    path("waitlist/", waitlist_api.WaitlistListView.as_view(), name="waitlist"),
    path("waitlist/<int:pk>/", waitlist_api.WaitlistDetailView.as_view(), name="waitlist-entry"),
    path("waitlist/<int:pk>/accept/", waitlist_api.WaitlistAcceptView.as_view(), name="waitlist-accept"),
    path("waitlist/<int:pk>/decline/", waitlist_api.WaitlistDeclineView.as_view(), name="waitlist-decline"),
    path("series/", series_api.SeriesListView.as_view(), name="series"),
    path("training-sessions/", training_api.SessionListView.as_view(), name="training-sessions"),
    path("training-sessions/<id:pk>/", training_api.SessionDetailView.as_view(), name="training-session"),
    path(
        "training-sessions/<id:pk>/register/",
        training_api.SessionRegisterView.as_view(),
        name="training-session-register",
    ),
    path(
        "training-sessions/<id:pk>/attendance/",
        training_api.SessionAttendanceView.as_view(),
        name="training-session-attendance",
    ),
    path("reports/", reports_api.ReportView.as_view(), name="reports"),
    # Anything else, even a path with a newline in it.
    re_path(r"^", api.NotFoundView.as_view(), name="not-found"),
]
