"""The OpenAPI document clients generate code from, and interactive docs without a CDN.

FastAPI writes the document from the routes; ``install`` completes it in one place rather
than in every decorator:

* the ``HTTPBearer`` security scheme, on every route that authenticates (its dependency
  tree holds ``security.authenticate``), so ``/docs`` can send an API key;
* every error a route can answer, each as RFC 9457 ``application/problem+json`` with the
  ``Problem`` schema: 401 where it authenticates, 403 where it checks roles, 404 where a
  path names something, 422 where it takes parameters or a body (or reads the raw
  request), 413 where it takes a body, 415 where it reads that body itself, 409 where it
  writes (a conflicting concurrent write), 503 where it reads the database, and what its
  service raises beyond those (``SERVICE_ERRORS``); success statuses beside the declared
  one (``ALSO_SUCCEEDS``);
* ``/docs`` (Swagger UI) and ``/redoc`` from assets the app serves itself, from the
  ``fastapi-offline`` package (Swagger UI: Apache-2.0; ReDoc and the package: MIT).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from importlib import resources
from typing import Any, get_args

from fastapi import FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from ledger.http import deps
from ledger.http.problems import PROBLEM
from ledger.http.security import RequireRoles, authenticate, authenticate_readonly

SCHEME = "HTTPBearer"
SESSION = get_args(deps.SessionDep)[1].dependency  # the request's unit of work
ASSETS = "/docs/assets"

DESCRIPTIONS = {
    401: "No API key, or one that is unknown, revoked or of a disabled principal; for a "
    "release, no `Ledger-Grant` header.",
    403: "The caller's roles do not admit this; for a release, a grant that is altered, "
    "expired, of another pipeline or signed by an unknown key.",
    404: "Nothing with this identifier (or not visible to the caller).",
    409: "Conflicts with the current state: a repeated or illegal change, or a concurrent "
    "write; nothing was written.",
    410: "No longer available: a revoked grant, a withdrawn consent, an erased subject.",
    413: "The body is over the size limit.",
    415: "The body's media type is not the one this route takes.",
    422: "The request does not match the schema, or a value is invalid (`errors` lists where).",
    429: "Too many downloads of this grant are running; retry later.",
    503: "The database is unreachable or not migrated.",
}

# What routes answer beyond what their parameters, roles and writes imply, from the
# errors their services raise (tests/http/test_openapi.py checks every entry names a
# route).
SERVICE_ERRORS: dict[tuple[str, str], tuple[int, ...]] = {
    ("POST", "/v1/fhir/Consent"): (404,),
    ("POST", "/v1/subjects/lookup"): (404,),
    ("POST", "/v1/consents"): (404,),
    ("POST", "/v1/datasets"): (404,),
    ("POST", "/v1/access-requests"): (404,),
    ("POST", "/v1/access-requests/{request_id}/approve"): (410,),
    ("GET", "/v1/grants/{grant_id}/manifest"): (410,),
    ("GET", "/v1/grants/{grant_id}/instances/{uid}"): (409, 410),
    ("POST", "/v1/grants/{grant_id}/archive"): (410, 429),
    ("POST", "/v1/authorize"): (404,),
    ("POST", "/v1/models"): (404,),
    ("GET", "/v1/log/checkpoint"): (404,),
    ("GET", "/v1/log/proofs/inclusion"): (404,),
    ("GET", "/v1/audit/subjects/{item_id}/lineage"): (410,),
    ("GET", "/v1/audit/subjects/{item_id}/prov"): (410,),
}


# Answers a route gives besides its declared success status.
ALSO_SUCCEEDS: dict[tuple[str, str], tuple[int, str]] = {
    ("POST", "/v1/subjects"): (200, "The patient was registered before: the same subject."),
    ("POST", "/v1/images"): (200, "The same bytes were stored before (`duplicate: true`)."),
}


class ValidationIssue(BaseModel):
    loc: list[str | int] = Field(description="Where: `body`, `query` or `path`, then names.")
    msg: str
    type: str


class Problem(BaseModel):
    """RFC 9457 problem details: how every error of this API is answered. Some carry more
    members, e.g. `errors` on 422, the refusing `policy_ids` on a release refusal, the bad
    lines of a CSV import."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(examples=["urn:ledger:problem:not-found"])
    title: str = Field(examples=["Not found"])
    status: int = Field(examples=[404])
    detail: str = Field(examples=["no grant 0b5c…"])
    instance: str | None = Field(default=None, description="The request's path.")
    errors: list[ValidationIssue | dict[str, Any]] | None = Field(
        default=None,
        description="On 422: each part of the request that is invalid; a schema failure as "
        "`{loc, msg, type}`, a CSV line as `{line, error}`, a FHIR element as "
        "`{element, msg}`, an unknown code as `{code}`.",
    )


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for dep in dependant.dependencies:
        if dep.call is not None:
            yield dep.call
        yield from _calls(dep)


def api_routes(routes: list[Any]) -> Iterator[Any]:
    """Every API route as the document sees it (included routers' prefixes and
    dependencies applied): an ``APIRoute``, or FastAPI's context around one."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # FastAPI before routers were kept unflattened
        yield from (route for route in routes if isinstance(route, APIRoute))
        return
    for context in iter_route_contexts(routes):
        if isinstance(context.original_route, APIRoute):
            yield context


def statuses(route: Any, method: str, operation: dict[str, Any]) -> set[int]:
    """The error statuses one operation can answer."""
    calls = list(_calls(route.dependant))
    found: set[int] = set(SERVICE_ERRORS.get((method, route.path_format), ()))
    if authenticate in calls or authenticate_readonly in calls:
        found.add(401)
    if any(isinstance(call, RequireRoles) for call in calls):
        found.add(403)
    if route.dependant.path_params:
        found.add(404)
    # A route taking the raw request reads (and checks) input FastAPI does not see.
    reads_request = route.dependant.request_param_name is not None
    if operation.get("parameters") or "requestBody" in operation or reads_request:
        found.add(422)
    if "requestBody" in operation:
        found.add(413)
        if reads_request:
            found.add(415)  # it takes one media type, and checks it itself
    if SESSION in calls:
        found.add(503)
    writes = method not in ("GET", "HEAD", "OPTIONS")
    if writes and any(dep.call is SESSION for dep in route.dependant.dependencies):
        found.add(409)  # a write of its own, which a concurrent one can conflict with
    return found


def document(schema: dict[str, Any], routes: list[Any]) -> None:
    """Add the security scheme, the problem schema and the error responses to ``schema``."""
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {})[SCHEME] = {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key: `Authorization: Bearer <key>`.",
    }
    schemas = components.setdefault("schemas", {})
    problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(problem.pop("$defs", {}))
    schemas["Problem"] = problem
    body = {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for route in api_routes(routes):
        if not route.include_in_schema:
            continue
        for method in sorted(route.methods):
            operation = schema["paths"].get(route.path_format, {}).get(method.lower())
            if operation is None:
                continue
            if {authenticate, authenticate_readonly} & set(_calls(route.dependant)):
                operation["security"] = [{SCHEME: []}]
            responses = operation.setdefault("responses", {})
            also = ALSO_SUCCEEDS.get((method, route.path_format))
            if also is not None:
                status, description = also
                declared = next(r for code, r in responses.items() if code.startswith("2"))
                responses.setdefault(str(status), {**declared, "description": description})
            for status in sorted(statuses(route, method, operation)):
                answer = {"description": DESCRIPTIONS[status], "content": body}
                if status == 422 or str(status) not in responses:
                    responses[str(status)] = answer  # 422: ours, not FastAPI's own shape
    text = repr(schema["paths"])
    for unused in ("HTTPValidationError", "ValidationError"):
        if f"#/components/schemas/{unused}'" not in text:
            schemas.pop(unused, None)


def install(app: FastAPI) -> None:
    """Complete the app's OpenAPI document and serve /docs and /redoc offline. Build the
    app with ``docs_url=None, redoc_url=None``: these replace FastAPI's CDN pages."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document(build(), app.routes)
        assert app.openapi_schema is not None
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    assets = resources.files("fastapi_offline") / "static"
    app.mount(ASSETS, StaticFiles(directory=str(assets)), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} API",
            swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS}/favicon.png",
            swagger_ui_parameters={"validatorUrl": None},  # no call to a validator service
        )

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} API",
            redoc_js_url=f"{root}{ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS}/favicon.png",
            with_google_fonts=False,
        )
