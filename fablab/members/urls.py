from django.contrib.auth import views as auth_views
from django.urls import path

from . import views

app_name = "members"
urlpatterns = [
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("profile/", views.profile, name="profile"),
    path("profile/calendar/reset/", views.reset_calendar, name="reset_calendar"),
    path("profile/kiosk-pin/", views.kiosk_pin, name="kiosk_pin"),
    path("language/", views.set_language, name="set_language"),
]
