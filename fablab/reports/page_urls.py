"""The report pages (``/reports/``): the scope, the printable report, one lab.

``print/`` comes before ``<lab>/``: a lab slugged "print" would have its report page hidden behind
it, the one word taken from the lab slugs. The downloads (``reports.urls``) have two segments and
cannot collide.
"""

from django.urls import path

from . import views

app_name = "report_pages"
urlpatterns = [
    path("", views.index, name="index"),
    path("print/", views.print_report, name="print"),
    path("<slug:lab>/", views.lab_report, name="lab"),
]
