from django.urls import path

from . import views

app_name = "labs"
urlpatterns = [
    path("", views.lab_list, name="list"),
    path("<slug:lab>/", views.lab_detail, name="detail"),
    path("<slug:lab>/<slug:machine>/", views.machine_week, name="machine"),
]
