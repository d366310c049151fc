from django.urls import path

from . import views

app_name = "trainings"
urlpatterns = [
    path("", views.session_list, name="list"),
    path("<int:pk>/", views.session_detail, name="detail"),
    path("<int:pk>/register/", views.register, name="register"),
    path("<int:pk>/unregister/", views.unregister, name="unregister"),
    path("<int:pk>/edit/", views.edit, name="edit"),
    path("<int:pk>/cancel/", views.cancel, name="cancel"),
    path("<int:pk>/attendance/", views.attendance_page, name="attendance"),
    path("labs/<slug:lab>/new/", views.schedule, name="schedule"),
    path("labs/<slug:lab>/trainers/", views.trainers, name="trainers"),
    path("initiatives/<slug:slug>/", views.initiative, name="initiative"),
]
