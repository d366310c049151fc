from django.contrib import admin
from django.shortcuts import redirect
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="labs:list", permanent=False)),
    # Browsers ask for /favicon.ico whatever the page links; send them to the static file.
    path("favicon.ico", lambda request: redirect(static("fablab/favicon.ico"))),
    path("admin/", admin.site.urls),
    path("accounts/", include("fablab.members.urls")),
    # Sign-up, email confirmation, password reset and change (django-allauth); its login and logout
    # paths are the ones above (members:login, members:logout), listed first.
    path("accounts/", include("allauth.urls")),
    # Before labs/: "labs/<lab>/board/" would otherwise read as a machine called "board".
    path("", include("devices.urls")),
    path("labs/", include("fablab.labs.urls")),
    path("trainings/", include("fablab.trainings.urls")),
    path("", include("fablab.booking.urls")),
    path("", include("fablab.booking.kiosk_urls")),
    path("calendar/", include("fablab.booking.calendar_urls")),
    # The report pages (/reports/, /reports/<lab>/, /reports/print/); their downloads are in reports.urls.
    path("reports/", include("fablab.reports.page_urls")),
    path("reports/", include("fablab.reports.urls")),
    path("open-data/", include("fablab.reports.opendata_urls")),
    path("api/v1/", include("fablab.booking.api_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
]
