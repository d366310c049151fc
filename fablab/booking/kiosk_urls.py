"""The lab kiosk (``/kiosk/<lab>/``) and its manager page; mounted at the site root by ``fablab/urls.py``."""

from django.urls import path

from . import kiosk_views

app_name = "kiosk"
urlpatterns = [
    path("kiosk/<slug:lab>/", kiosk_views.screen, name="screen"),
    path("kiosk/<slug:lab>/pick/", kiosk_views.pick, name="pick"),
    path("kiosk/<slug:lab>/finish/", kiosk_views.finish, name="finish"),
    path("manage/labs/<slug:lab>/kiosks/", kiosk_views.manage, name="manage"),
    path("manage/labs/<slug:lab>/kiosks/enrol/", kiosk_views.enrol, name="enrol"),
    path("manage/labs/<slug:lab>/kiosks/<int:pk>/revoke/", kiosk_views.revoke, name="revoke"),
    path("manage/labs/<slug:lab>/kiosks/badge/", kiosk_views.badge, name="badge"),
]
