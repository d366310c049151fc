from django.urls import path

from . import ical

app_name = "calendar"
urlpatterns = [
    path("member/<slug:token>.ics", ical.member_feed, name="member"),
    path("machine/<slug:lab>/<slug:machine>.ics", ical.machine_feed, name="machine"),
]
