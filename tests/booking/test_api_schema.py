"""The OpenAPI schema documents every answer the API can give before a view runs."""

from __future__ import annotations

import pytest
from drf_spectacular.generators import SchemaGenerator


@pytest.fixture(scope="module")
def schema() -> dict:
    return SchemaGenerator().get_schema(request=None, public=True)


def test_every_operation_with_a_body_documents_unsupported_media_type(schema):
    with_body = [
        (path, method)
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        if "requestBody" in operation
    ]
    assert with_body, "the API has operations that take a body"
    for path, method in with_body:
        answer = schema["paths"][path][method]["responses"].get("415")
        assert answer is not None, f"{method.upper()} {path} does not document 415"
        assert "unsupported_media_type" in answer["description"]


@pytest.mark.django_db
def test_a_body_of_an_unsupported_type_is_the_documented_415(client):
    response = client.post("/api/v1/auth/token/", data=b"\x81", content_type="text/plain")
    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"
