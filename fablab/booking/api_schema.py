"""OpenAPI schema hooks (drf-spectacular ``POSTPROCESSING_HOOKS``).

Every operation that takes a request body can be answered ``415 unsupported_media_type``
by DRF's parsers, before the view runs, so no view's ``@extend_schema`` lists it. The hook
adds that answer once, here, so the schema tells the truth about every such operation.
"""

from __future__ import annotations

from typing import Any

from .api_errors import describe_codes

_METHODS = ("post", "put", "patch")


def document_unsupported_media_type(result: dict[str, Any], generator, request, public) -> dict[str, Any]:
    for operations in result.get("paths", {}).values():
        for method, operation in operations.items():
            if method not in _METHODS or "requestBody" not in operation:
                continue
            operation.setdefault("responses", {}).setdefault(
                "415",
                {
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                    "description": describe_codes("unsupported_media_type"),
                },
            )
    return result
