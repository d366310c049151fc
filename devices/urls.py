"""The live floor board and the machines' live pages (mounted at the site root by ``fablab/urls.py``)."""

from django.urls import path

from . import views

app_name = "devices"
urlpatterns = [
    path("labs/<slug:lab>/board/", views.lab_board, name="board"),
    path("labs/<slug:lab>/machines/<slug:machine>/live/", views.machine_live, name="machine"),
    path("labs/<slug:lab>/machines/<slug:machine>/command/", views.machine_command, name="command"),
]
