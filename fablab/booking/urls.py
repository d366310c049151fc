from django.urls import path

from . import manage_views, out_of_service_views, series_views, strike_views, views, waitlist_views

app_name = "booking"
urlpatterns = [
    path("bookings/", views.my_bookings, name="mine"),
    path("bookings/<int:pk>/", views.detail, name="detail"),
    path("bookings/<int:pk>/check-in/", views.check_in, name="check_in"),
    path("bookings/<int:pk>/finish/", views.finish, name="finish"),
    path("bookings/<int:pk>/cancel/", views.cancel, name="cancel"),
    path("book/<int:machine_id>/", views.book, name="book"),
    path("bookings/<int:pk>/cancel-series/", series_views.cancel_rest, name="cancel_series"),
    path("workshops/<int:pk>/", series_views.workshop_detail, name="workshop"),
    path("workshops/<int:pk>/register/<int:booking>/", series_views.register, name="workshop_register"),
    path("workshops/<int:pk>/attendance/<int:booking>/", series_views.attendance, name="workshop_attendance"),
    path("manage/labs/<slug:lab>/workshops/", series_views.workshop_list, name="workshops"),
    path("manage/labs/<slug:lab>/workshops/new/", series_views.workshop_new, name="workshop_new"),
    path("waitlist/join/<int:machine_id>/", waitlist_views.join, name="waitlist_join"),
    path("waitlist/<int:pk>/leave/", waitlist_views.leave, name="waitlist_leave"),
    path("waitlist/offers/<int:pk>/accept/", waitlist_views.accept, name="waitlist_accept"),
    path("waitlist/offers/<int:pk>/decline/", waitlist_views.decline, name="waitlist_decline"),
    path("manage/", manage_views.overview, name="manage"),
    path("manage/approvals/", manage_views.approvals, name="approvals"),
    path(
        "manage/approvals/<int:pk>/approve/",
        manage_views.decide,
        {"decision": "approve"},
        name="approve",
    ),
    path(
        "manage/approvals/<int:pk>/decline/",
        manage_views.decide,
        {"decision": "decline"},
        name="decline",
    ),
    path("manage/certifications/", manage_views.certifications, name="certifications"),
    path(
        "manage/certifications/<int:pk>/revoke/",
        manage_views.revoke_certification,
        name="revoke_certification",
    ),
    path("manage/machines/<int:machine_id>/maintenance/", manage_views.maintenance, name="maintenance"),
    path("manage/maintenance/<int:pk>/delete/", manage_views.delete_maintenance, name="delete_maintenance"),
    path(
        "manage/machines/<int:machine_id>/out-of-service/",
        out_of_service_views.put_out_of_service,
        name="out_of_service",
    ),
    path(
        "manage/maintenance/<int:pk>/back-in-service/",
        out_of_service_views.back_in_service,
        name="back_in_service",
    ),
    path("manage/maintenance/<int:pk>/shorten/", out_of_service_views.shorten, name="shorten_maintenance"),
    path("manage/labs/<slug:lab>/day/", manage_views.day, name="day"),
    path("manage/labs/<slug:lab>/settings/", manage_views.lab_settings, name="lab_settings"),
    path("manage/labs/<slug:lab>/policy/", strike_views.lab_policy, name="lab_policy"),
    path("manage/labs/<slug:lab>/strikes/", strike_views.lab_strikes, name="strikes"),
    path("manage/labs/<slug:lab>/strikes/<int:member>/", strike_views.member_strikes, name="member_strikes"),
    path("manage/labs/<slug:lab>/strikes/waive/<int:pk>/", strike_views.waive, name="waive_strike"),
    path(
        "manage/labs/<slug:lab>/hours/<int:pk>/delete/",
        manage_views.delete_opening_hours,
        name="delete_opening_hours",
    ),
    path(
        "manage/labs/<slug:lab>/closures/<int:pk>/delete/", manage_views.delete_closure, name="delete_closure"
    ),
    path(
        "manage/machines/<int:machine_id>/settings/", manage_views.machine_settings, name="machine_settings"
    ),
    path("manage/labs/<slug:lab>/quotas/<int:pk>/", manage_views.edit_quota, name="edit_quota"),
    path("manage/labs/<slug:lab>/quotas/<int:pk>/delete/", manage_views.delete_quota, name="delete_quota"),
    path("manage/machines/<int:machine_id>/book/", manage_views.book_for_member, name="book_for_member"),
]
