"""Open data: the programme figures anyone may download, and their DCAT-AP description (JSON-LD).

Only the network and lab × year tables of complete years, after the disclosure control for open data
(:func:`fablab.reports.service.open_data_cells`: rules 3–7, then counts rounded to base 5 and 1–9
suppressed). Licence CC BY 4.0. Nothing here needs an account; downloads are logged all the same
(``via="open"``, no user), as every export is.

Settings (all optional): ``FABLAB_OPEN_DATA_PUBLISHER`` (the publisher's name),
``FABLAB_OPEN_DATA_CONTACT`` (an email address, or ``{"name", "email"}``; defaults to the publisher and
``DEFAULT_FROM_EMAIL``), ``FABLAB_OPEN_DATA_SPATIAL`` (a URI of the area covered; defaults to Belgium in
the EU country authority table).

Themes (EU data theme vocabulary): ``EDUC`` (education, culture and sport) because the labs are
places to learn making — trainings, workshops, initiatives for young people — and ``SOCI`` (population
and society) because the figures are about whom the publicly funded labs reach (makers by age band,
category and initiative). ``ECON`` was not chosen: the figures measure no economic output.
"""

from __future__ import annotations

import json
from collections import defaultdict

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_GET

from fablab.labs.models import Lab

from . import exports, service
from .cells import Cell
from .definitions import AGE_BANDS, DIMENSIONS, GENDERS, METRICS, USER_CATEGORIES
from .figures import NO_VALUE, plain
from .page_sections import names_by_slug

LICENSE = "https://creativecommons.org/licenses/by/4.0/"
THEMES = ("EDUC", "SOCI")
THEME_BASE = "http://publications.europa.eu/resource/authority/data-theme/"
DEFAULT_SPATIAL = "http://publications.europa.eu/resource/authority/country/BEL"
EU_LANGUAGES = {"en": "ENG", "nl": "NLD", "fr": "FRA"}
JSONLD_TYPE = "application/ld+json"

TITLE = _("FabLab programme figures")
DESCRIPTION = _(
    "Yearly figures of the labs the programme funds, for the whole network and per lab: how much the "
    "machines were available, booked and used, how many different makers the labs reached, trainings "
    "and initiatives. Aggregates only: counts are rounded to multiples of 5, and any figure resting on "
    "fewer than 10 people is suppressed (flag c)."
)
KEYWORDS = (_("fablab"), _("makerspace"), _("machine utilisation"), _("digital fabrication"), _("training"))


def _in_every_language(text) -> list[dict]:
    """A text as JSON-LD language-tagged literals, one per site language."""
    out = []
    for code, _name in settings.LANGUAGES:
        with translation.override(code):
            out.append({"@language": code, "@value": str(text)})
    return out


def publisher_name() -> str:
    return getattr(settings, "FABLAB_OPEN_DATA_PUBLISHER", "") or "FabLab network"


def contact() -> dict:
    value = getattr(settings, "FABLAB_OPEN_DATA_CONTACT", None) or {}
    if isinstance(value, str):
        value = {"email": value}
    return {
        "name": value.get("name") or publisher_name(),
        "email": value.get("email") or settings.DEFAULT_FROM_EMAIL,
    }


# --------------------------------------------------------------------------------------- catalogue


def catalog_document(request: HttpRequest) -> dict:
    """The DCAT-AP catalogue of the open data: one dataset, its CSV and CSVW distributions."""
    page_url = request.build_absolute_uri(reverse("opendata:page"))
    csv_url = request.build_absolute_uri(reverse("opendata:csv"))
    csvw_url = request.build_absolute_uri(reverse("opendata:csvw"))
    years = service.open_data_years()
    publisher = {"@type": "foaf:Agent", "foaf:name": publisher_name()}
    who = contact()
    dataset = {
        "@id": page_url + "#programme",
        "@type": "dcat:Dataset",
        "dct:identifier": page_url + "#programme",
        "dct:title": _in_every_language(TITLE),
        "dct:description": _in_every_language(DESCRIPTION),
        "dct:publisher": publisher,
        "dcat:contactPoint": {
            "@type": "vcard:Organization",
            "vcard:fn": who["name"],
            "vcard:hasEmail": {"@id": f"mailto:{who['email']}"},
        },
        "dcat:keyword": [item for word in KEYWORDS for item in _in_every_language(word)],
        "dcat:theme": [{"@id": THEME_BASE + theme} for theme in THEMES],
        "dct:spatial": {"@id": getattr(settings, "FABLAB_OPEN_DATA_SPATIAL", "") or DEFAULT_SPATIAL},
        "dct:accrualPeriodicity": {
            "@id": "http://publications.europa.eu/resource/authority/frequency/ANNUAL"
        },
        "dct:accessRights": {"@id": "http://publications.europa.eu/resource/authority/access-right/PUBLIC"},
        "dct:modified": {"@value": timezone.localdate().isoformat(), "@type": "xsd:date"},
        "dcat:landingPage": {"@id": page_url},
        "dcat:distribution": [
            {
                "@id": csv_url,
                "@type": "dcat:Distribution",
                "dct:title": _in_every_language(_("Programme figures (CSV, tidy long format)")),
                "dcat:accessURL": {"@id": page_url},
                "dcat:downloadURL": {"@id": csv_url},
                "dcat:mediaType": {"@id": "http://www.iana.org/assignments/media-types/text/csv"},
                "dct:format": {"@id": "http://publications.europa.eu/resource/authority/file-type/CSV"},
                "dct:license": {"@id": LICENSE},
                "dct:conformsTo": {"@id": csvw_url},
            },
            {
                "@id": csvw_url,
                "@type": "dcat:Distribution",
                "dct:title": _in_every_language(_("Column descriptions of the CSV (W3C CSVW metadata)")),
                "dcat:accessURL": {"@id": page_url},
                "dcat:downloadURL": {"@id": csvw_url},
                "dcat:mediaType": {
                    "@id": "http://www.iana.org/assignments/media-types/application/csvm+json"
                },
                "dct:format": {"@id": "http://publications.europa.eu/resource/authority/file-type/JSON"},
                "dct:license": {"@id": LICENSE},
            },
        ],
    }
    if years:
        dataset["dct:temporal"] = {
            "@type": "dct:PeriodOfTime",
            "dcat:startDate": {"@value": f"{years[0]}-01-01", "@type": "xsd:date"},
            "dcat:endDate": {"@value": f"{years[-1]}-12-31", "@type": "xsd:date"},
        }
    return {
        "@context": {
            "dcat": "http://www.w3.org/ns/dcat#",
            "dct": "http://purl.org/dc/terms/",
            "foaf": "http://xmlns.com/foaf/0.1/",
            "vcard": "http://www.w3.org/2006/vcard/ns#",
            "xsd": "http://www.w3.org/2001/XMLSchema#",
        },
        "@id": request.build_absolute_uri(reverse("opendata:catalog")),
        "@type": "dcat:Catalog",
        "dct:title": _in_every_language(_("FabLab open data")),
        "dct:description": _in_every_language(DESCRIPTION),
        "dct:publisher": publisher,
        "dct:license": {"@id": LICENSE},
        "dct:language": [
            {"@id": f"http://publications.europa.eu/resource/authority/language/{EU_LANGUAGES[code]}"}
            for code, _name in settings.LANGUAGES
            if code in EU_LANGUAGES
        ],
        "foaf:homepage": {"@id": page_url},
        "dcat:dataset": [dataset],
    }


# --------------------------------------------------------------------------------------- views


@require_GET
def catalog(request: HttpRequest) -> HttpResponse:
    return JsonResponse(
        catalog_document(request),
        content_type=JSONLD_TYPE,
        json_dumps_params={"ensure_ascii": False, "indent": 2},
    )


@require_GET
def programme_csv(request: HttpRequest) -> HttpResponse:
    cells = service.open_data_cells()
    years = service.open_data_years()
    exports.log_export(
        request.user, fmt="csv", period=_years_label(years), level="open", via="open", rows=len(cells)
    )
    response = HttpResponse(exports.csv_bytes(cells), content_type=exports.CSV_TYPE)
    response["Content-Disposition"] = 'attachment; filename="programme.csv"'
    metadata = request.build_absolute_uri(reverse("opendata:csvw"))
    response["Link"] = f'<{metadata}>; rel="describedby"; type="{exports.CSVW_TYPE}"'
    return response


@require_GET
def programme_csvw(request: HttpRequest) -> HttpResponse:
    metadata = exports.csvw_metadata(
        request.build_absolute_uri(reverse("opendata:csv")),
        title=str(TITLE),
        description=str(DESCRIPTION),
        license_url=LICENSE,
    )
    return HttpResponse(json.dumps(metadata, ensure_ascii=False, indent=2), content_type=exports.CSVW_TYPE)


@require_GET
def page(request: HttpRequest) -> HttpResponse:
    cells = service.open_data_cells()
    names = dict(Lab.objects.values_list("slug", "name"))
    return render(
        request,
        "reports/opendata.html",
        {
            "years": tables_by_year(cells, names, category_labels(cells)),
            "license_url": LICENSE,
            "publisher": publisher_name(),
            "contact": contact(),
        },
    )


def _years_label(years: list[int]) -> str:
    if not years:
        return ""
    return str(years[0]) if years[0] == years[-1] else f"{years[0]}-{years[-1]}"


def category_labels(cells: list[Cell]) -> dict[str, dict]:
    """Each breakdown's ``{category: label}``, as the report pages show them: the fixed categories in
    their display order, trainings and initiatives by their names (the cells carry their slugs)."""
    from fablab.members.models import Training
    from fablab.trainings.models import Initiative

    def slugs(dimension: str) -> set[str]:
        return {cell.category for cell in cells if cell.dimension == dimension}

    return {
        "gender": GENDERS,
        "age_band": AGE_BANDS,
        "user_category": USER_CATEGORIES,
        "training": names_by_slug(Training, slugs("training")),
        "initiative": names_by_slug(Initiative, slugs("initiative")),
    }


def tables_by_year(
    cells: list[Cell], lab_names: dict[str, str], labels_of: dict[str, dict] | None = None
) -> list[dict]:
    """The open data as HTML tables: per year, one table per breakdown; rows are (category, metric),
    columns the network then each lab (by name). ``labels_of``: :func:`category_labels`."""
    labels_of = labels_of or {}
    by_year: dict[str, dict[str, dict[tuple, dict[str, Cell]]]] = defaultdict(lambda: defaultdict(dict))
    labs_of_year: dict[str, set[str]] = defaultdict(set)
    for cell in cells:
        row = (cell.category, cell.metric)
        by_year[cell.period][cell.dimension].setdefault(row, {})[cell.lab] = cell
        if cell.lab:
            labs_of_year[cell.period].add(cell.lab)
    years = []
    for year in sorted(by_year, reverse=True):
        labs = sorted(labs_of_year[year], key=lambda slug: lab_names.get(slug, slug).lower())
        columns = [("", gettext("Network"))] + [(slug, lab_names.get(slug, slug)) for slug in labs]
        tables = []
        for dimension in sorted(by_year[year], key=lambda d: (d != "", d)):
            rows = []
            labels = labels_of.get(dimension, {})
            for (category, metric), per_lab in sorted(
                by_year[year][dimension].items(), key=lambda item: _row_order(item, labels)
            ):
                definition = METRICS.get(metric)
                rows.append(
                    {
                        "category": str(labels.get(category, category)) if dimension else "",
                        "metric": str(definition.label) if definition else metric,
                        "definition": str(definition.definition) if definition else "",
                        "values": [_shown(per_lab.get(slug), metric, slug) for slug, _name in columns],
                    }
                )
            label = DIMENSIONS.get(dimension, {}).get("label", dimension) if dimension else _("Totals")
            tables.append({"dimension": dimension, "label": str(label), "rows": rows})
        years.append({"year": year, "columns": [name for _slug, name in columns], "tables": tables})
    return years


_METRIC_ORDER = {name: index for index, name in enumerate(METRICS)}


def _row_order(item, labels: dict) -> tuple:
    """Categories in their table's order (declared ones first, "not declared" last), then the metrics in
    the order of the definitions."""
    (category, metric), _per_lab = item
    order = list(labels)
    position = order.index(category) if category in order else len(order)
    return (position, category, _METRIC_ORDER.get(metric, len(_METRIC_ORDER)), metric)


def _shown(cell: Cell | None, metric: str, lab: str) -> dict:
    """What a table cell shows: the value and unit in the viewer's language (as on the report pages),
    "c" when suppressed, "–" without a value; ``lab_only`` marks a network cell of a figure that is
    published per lab only (P3, P5: see the metric's levels), nothing when a lab has no such figure."""
    if cell is None:
        lab_only = not lab and metric in METRICS and "network" not in METRICS[metric].levels
        return {"text": NO_VALUE if lab_only else "", "suppressed": False, "lab_only": lab_only}
    if cell.suppressed:
        return {"text": "c", "suppressed": True}
    return {"text": plain(cell.value, cell.unit), "suppressed": False}
