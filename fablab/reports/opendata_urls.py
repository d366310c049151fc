"""The anonymous open data (``/open-data/``): the page, the CSV, its CSVW metadata, the DCAT-AP catalogue."""

from django.urls import path

from . import opendata

app_name = "opendata"
urlpatterns = [
    path("", opendata.page, name="page"),
    path("programme.csv", opendata.programme_csv, name="csv"),
    path("programme.csv-metadata.json", opendata.programme_csvw, name="csvw"),
    path("catalog.jsonld", opendata.catalog, name="catalog"),
]
