"""The OpenAPI document: a bearer scheme on every protected route, every error documented
as problem+json, and /docs and /redoc that load nothing from outside the app."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from ledger.errors import NotFound
from ledger.http.openapi import ALSO_SUCCEEDS, SCHEME, SERVICE_ERRORS, Problem, api_routes
from ledger.http.security import RequireRoles

METHODS = {"get", "post", "put", "patch", "delete"}
# Routes anyone may call: no scheme, no 401.
PUBLIC = {
    ("get", "/healthz"),
    ("get", "/.well-known/jwks.json"),
    ("get", "/v1/purposes"),
    ("get", "/v1/log/checkpoint"),
    ("get", "/v1/log/proofs/inclusion"),
    ("get", "/v1/log/proofs/consistency"),
}


@pytest.fixture
def document(client: TestClient) -> dict[str, Any]:
    r = client.get("/openapi.json")
    assert r.status_code == 200
    doc: dict[str, Any] = r.json()
    return doc


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, op)
        for path, ops in doc["paths"].items()
        for method, op in ops.items()
        if method in METHODS
    ]


def _role_checked(app: FastAPI) -> set[tuple[str, str]]:
    def checks(dependant: Any) -> bool:
        return any(isinstance(d.call, RequireRoles) or checks(d) for d in dependant.dependencies)

    return {
        (method.lower(), route.path_format)
        for route in api_routes(app.routes)
        for method in route.methods
        if checks(route.dependant)
    }


def test_the_bearer_scheme_is_on_protected_routes_only(document: dict[str, Any]) -> None:
    scheme = document["components"]["securitySchemes"][SCHEME]
    assert scheme == {"type": "http", "scheme": "bearer", "description": scheme["description"]}
    operations = _operations(document)
    assert len(operations) > 50
    for method, path, op in operations:
        if (method, path) in PUBLIC:
            assert "security" not in op, f"{method} {path} is public"
        else:
            assert op.get("security") == [{SCHEME: []}], f"{method} {path} has no scheme"
    assert {(m, p) for m, p, _ in operations} >= PUBLIC


# Errors a standard gives a body of its own: STOW-RS answers "none stored" (409) with the
# Store Instances Response (PS3.18 §10.5.3), listing each failed instance and its reason.
STANDARD_ERROR_BODIES = {("post", "/v1/dicomweb/studies", "409")}


def test_every_route_documents_the_errors_it_can_answer(
    app: FastAPI, document: dict[str, Any]
) -> None:
    role_checked = _role_checked(app)
    assert len(role_checked) > 40
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for method, path, op in _operations(document):
        responses = op["responses"]
        where = f"{method.upper()} {path}"
        if op.get("parameters") or "requestBody" in op:
            assert "422" in responses, f"{where} takes input but documents no 422"
        if "requestBody" in op:
            assert "413" in responses, where
        if "{" in path:
            assert "404" in responses, where
        if op.get("security"):
            assert "401" in responses, where
        if (method, path) in role_checked:
            assert "403" in responses, where
        for status, answer in responses.items():
            if (method, path, status) in STANDARD_ERROR_BODIES:
                continue
            if status.startswith(("4", "5")) and path != "/healthz":
                assert answer["content"] == problem, f"{where} {status} is not problem+json"
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas  # FastAPI's shape: never what we answer


def test_service_errors_and_other_successes_name_routes_that_exist(
    document: dict[str, Any],
) -> None:
    operations = {(m.upper(), p): op for m, p, op in _operations(document)}
    for (method, path), statuses in SERVICE_ERRORS.items():
        assert (method, path) in operations, f"{method} {path} is no route"
        for status in statuses:
            assert str(status) in operations[method, path]["responses"]
    archive = operations["POST", "/v1/grants/{grant_id}/archive"]["responses"]
    assert {"410", "429"} <= set(archive)
    for path in ("/v1/images", "/v1/consents/import"):  # they read their body themselves
        assert "415" in operations["POST", path]["responses"]
    for (method, path), (status, _) in ALSO_SUCCEEDS.items():
        answers = operations[method, path]["responses"]
        assert answers[str(status)]["content"] == answers["201"]["content"]


def test_the_problem_schema_is_what_errors_carry(client: TestClient) -> None:
    assert set(NotFound("x").problem(instance="/p")) <= set(Problem.model_fields)
    r = client.get("/v1/principals/me")
    assert r.status_code == 401
    Problem.model_validate(r.json())
    r = client.post("/v1/subjects", json={}, headers={"Authorization": "Bearer nope"})
    Problem.model_validate(r.json())


URL = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url:\s*["']([^"']+)["']""")


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_load_only_local_assets(client: TestClient, page: str) -> None:
    r = client.get(page)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    html = r.text
    assert "http://" not in html
    assert "https://" not in html
    urls = {a or b for a, b in URL.findall(html)}
    urls |= set(re.findall(r"""spec-url=["']([^"']+)["']""", html))
    assert len(urls) >= 3, urls
    for url in urls:
        assert url.startswith("/"), url
        assert not url.startswith("//"), url
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert asset.content
