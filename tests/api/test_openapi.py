"""The OpenAPI document tells the truth: JSON bodies have their schemas, every error a route can give is documented
with the ``{"detail": string}`` body, and request-validation errors are the documented 400 naming the parameter
on every route (never FastAPI's 422)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.conftest import make_buildings
from twin.api.app import create_app
from twin.store import Store

JSON_TYPES = ("application/json", "application/geo+json", "application/schema+json")


@pytest.fixture(scope="module")
def api(tmp_path_factory) -> TestClient:
    store = Store.init(tmp_path_factory.mktemp("openapi") / "store")
    store.commit(make_buildings(3), message="buildings")
    return TestClient(create_app(store.root))


@pytest.fixture(scope="module")
def doc(api: TestClient) -> dict:
    r = api.get("/openapi.json")
    assert r.status_code == 200
    return r.json()


def _operations(doc: dict):
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            yield f"{method.upper()} {path}", op


def _resolve(doc: dict, schema: dict) -> dict:
    while "$ref" in schema or (list(schema) == ["allOf"] and len(schema["allOf"]) == 1):
        schema = schema["allOf"][0] if "allOf" in schema else schema
        if "$ref" in schema:
            schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def test_json_bodies_are_described_by_their_schema_not_as_a_string(doc: dict) -> None:
    for name, op in _operations(doc):
        ok = [code for code in op["responses"] if code.startswith("2")]
        assert ok, f"{name} documents no success response"
        for media, content in op["responses"][ok[0]].get("content", {}).items():
            if media not in JSON_TYPES:
                continue
            schema = _resolve(doc, content.get("schema") or {})
            assert schema.get("type") in ("object", "array"), (name, media, schema)


def test_every_operation_documents_its_errors_with_the_detail_body(doc: dict) -> None:
    detail = doc["components"]["schemas"]["ErrorDetail"]
    assert detail["required"] == ["detail"] and detail["properties"]["detail"]["type"] == "string"
    for name, op in _operations(doc):
        responses = op["responses"]
        assert "422" not in responses, name
        params = op.get("parameters", [])
        expected = {"431"} | ({"400"} if params else set())
        if any(p["in"] == "path" for p in params) or {p["name"] for p in params} & {"branch", "as_of"}:
            expected.add("404")
        assert expected <= set(responses), (name, sorted(responses))
        for code in expected:
            schema = _resolve(doc, responses[code]["content"]["application/json"]["schema"])
            assert schema["properties"]["detail"]["type"] == "string", (name, code)
    assert "HTTPValidationError" not in doc["components"]["schemas"]


def test_routes_reading_the_store_document_503(doc: dict) -> None:
    for path in ("/collections", "/collections/{collectionId}/items", "/commits", "/assets", "/health"):
        assert "503" in doc["paths"][path]["get"]["responses"], path
    assert "503" not in doc["paths"]["/conformance"]["get"]["responses"]


@pytest.mark.parametrize(("url", "param"), [
    ("/collections/buildings/items?limit=0", "limit"),        # OGC route
    ("/collections/buildings/items?f=xml", "f"),
    ("/layers/fixes/cells?res=99", "res"),                     # H3 route (was a 422)
    ("/commits?limit=abc", "limit"),                           # history
    ("/commits/abc/changes", "version"),
    ("/imagery/1/a/0.png", "x"),
    ("/?f=pdf", "f"),
])
def test_validation_errors_are_400_naming_the_parameter_on_every_route(api: TestClient, url: str,
                                                                        param: str) -> None:
    r = api.get(url)
    assert r.status_code == 400, (url, r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert list(body) == ["detail"] and body["detail"].startswith(f"{param}: "), body


def test_the_landing_page_documents_both_of_its_media_types(doc: dict, api: TestClient) -> None:
    content = doc["paths"]["/"]["get"]["responses"]["200"]["content"]
    assert set(content) == {"text/html", "application/json"}
    assert _resolve(doc, content["application/json"]["schema"])["required"] == ["title", "description", "time_zone",
                                                                                       "links"]
    assert api.get("/?f=json").headers["content-type"] == "application/json"
    assert api.get("/?f=html").headers["content-type"].startswith("text/html")
    assert api.get("/", headers={"Accept": "text/html"}).headers["content-type"].startswith("text/html")
    assert api.get("/").headers["content-type"] == "application/json"  # */* (API clients): JSON
