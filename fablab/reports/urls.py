"""Report downloads for the pages (``/reports/export/<fmt>/``); the pages are in ``page_urls``.

Two segments, so no lab slug of the pages' ``/reports/<lab>/`` can hide them.
"""

from django.urls import path

from . import export_views

app_name = "reports"
urlpatterns = [
    path("export/<str:fmt>/", export_views.export, name="export"),
]
