"""The console's response headers (``web/console.py``, ``ConsoleHeaders``): on every
console page, and on nothing else the server answers."""

from __future__ import annotations

from fastapi.testclient import TestClient

from ledger.web.console import CSP


def test_console_pages_carry_their_headers_and_api_answers_do_not(client: TestClient) -> None:
    page = client.get("/console/login")
    assert page.status_code == 200
    assert page.headers["Cache-Control"] == "no-store"
    assert page.headers["Content-Security-Policy"] == CSP
    assert page.headers["Server-Timing"].startswith("app;dur=")
    redirected = client.get("/console/", follow_redirects=False)  # not signed in
    assert redirected.status_code in (302, 303)
    assert redirected.headers["Cache-Control"] == "no-store"
    api = client.get("/healthz")
    assert api.status_code == 200
    assert not {"server-timing", "content-security-policy"} & set(api.headers)
