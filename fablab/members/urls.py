from django.contrib.auth import views as auth_views
from django.urls import path

from . import account_views, views

app_name = "members"
urlpatterns = [
    path("login/", account_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("profile/", views.profile, name="profile"),
    path("profile/calendar/reset/", views.reset_calendar, name="reset_calendar"),
    path("profile/kiosk-pin/", views.kiosk_pin, name="kiosk_pin"),
    path("profile/my-data/", views.download_data, name="download_data"),
    path("profile/delete/", views.delete_account, name="delete_account"),
    path("language/", views.set_language, name="set_language"),
    path("profile/tokens/revoke/", account_views.revoke_token, name="revoke_token"),
    path("labs/<slug:lab>/join/", account_views.join_lab, name="join_lab"),
    path("manage/guardian-consent/", account_views.guardian_consent, name="guardian_consent"),
    path("manage/labs/<slug:lab>/members/", account_views.lab_members, name="lab_members"),
]
