"""The live floor board, the machines' live pages and the command API (mounted at the site root by ``fablab/urls.py``)."""

from django.urls import path

from . import api, care_api, care_views, interlock_views, views

app_name = "devices"
urlpatterns = [
    path("labs/<slug:lab>/board/", views.lab_board, name="board"),
    path("labs/<slug:lab>/states.json", views.lab_states, name="states"),
    path("labs/<slug:lab>/machines/<slug:machine>/live/", views.machine_live, name="machine"),
    path("labs/<slug:lab>/machines/<slug:machine>/command/", views.machine_command, name="command"),
    path(
        "labs/<slug:lab>/machines/<slug:machine>/interlock/",
        interlock_views.machine_interlock,
        name="interlock",
    ),
    path(
        "labs/<slug:lab>/machines/<slug:machine>/interlock/<int:pk>/end/",
        interlock_views.end_override,
        name="interlock-end",
    ),
    path("labs/<slug:lab>/machines/<slug:machine>/care/", care_views.add_interval, name="care-add"),
    path(
        "labs/<slug:lab>/machines/<slug:machine>/care/<int:pk>/remove/",
        care_views.remove_interval,
        name="care-remove",
    ),
    path(
        "labs/<slug:lab>/machines/<slug:machine>/care/<int:pk>/done/",
        care_views.service_done,
        name="care-done",
    ),
    path(
        "labs/<slug:lab>/machines/<slug:machine>/care/fault/<int:pk>/resolve/",
        care_views.resolve_fault,
        name="care-fault-resolve",
    ),
    # The command API lives with the commands; mounted before the booking API's catch-all.
    path("api/v1/machines/<int:pk>/commands/", api.MachineCommandsView.as_view(), name="api-commands"),
    path("api/v1/machines/<int:pk>/care/", care_api.MachineCareView.as_view(), name="api-care"),
    path("api/v1/commands/<uuid:pk>/", api.CommandDetailView.as_view(), name="api-command"),
    path("api/v1/alerts/", api.AlertListView.as_view(), name="api-alerts"),
    path("api/v1/alerts/<int:pk>/resolve/", care_api.FaultResolveView.as_view(), name="api-alert-resolve"),
]
