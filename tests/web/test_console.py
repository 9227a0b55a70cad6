"""The console over HTTP (no browser): sign-in, roles per page, CSRF, refusals as pages."""

from __future__ import annotations

import re
import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, update
from sqlmodel import col

from ledger.access.models import AccessReview
from ledger.clock import utcnow
from ledger.db import snapshot, transaction
from ledger.principals.models import Role
from ledger.web.models import WebSession
from ledger.web.sessions import COOKIE
from tests.access.test_access_api import _file
from tests.conftest import MakePrincipal, auth

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def sign_in(client: TestClient, key: str) -> str:
    """Sign in through the form; returns the page's CSRF token for later forms."""
    form = client.get("/console/login")
    token = CSRF.search(form.text)
    assert token, form.text
    r = client.post(
        "/console/login",
        data={"api_key": key, "csrf": token.group(1), "next": "/console/"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    assert "httponly" in r.headers["set-cookie"].lower()
    assert "samesite=strict" in r.headers["set-cookie"].lower()
    home = client.get("/console/")
    found = CSRF.search(home.text)
    assert found
    return found.group(1)


@pytest.fixture
def pending(client: TestClient, world: dict[str, str], make_principal: MakePrincipal) -> str:
    return str(_file(client, make_principal(Role.pipeline), world["all"]).json()["id"])


def test_steward_approves_once_and_sees_the_grant(
    client: TestClient, engine: Engine, pending: str, make_principal: MakePrincipal
) -> None:
    csrf = sign_in(client, make_principal(Role.steward))
    queue = client.get("/console/requests")
    assert pending[:8] in queue.text
    page = client.get(f"/console/requests/{pending}")
    assert page.status_code == 200
    assert "<svg" in page.text
    assert "Composition" in page.text
    assert "0 of 1" in page.text
    url = f"/console/requests/{pending}/approve"
    forged = client.post(url, data={"comment": "ok", "csrf": "forged"})
    assert forged.status_code == 403
    done = client.post(url, data={"comment": "ok", "csrf": csrf}, follow_redirects=False)
    assert done.status_code == 303
    again = client.post(url, data={"comment": "ok again", "csrf": csrf})
    assert again.status_code == 409
    assert "Nothing was changed" in again.text
    with snapshot(engine) as session:
        reviews = session.execute(
            select(AccessReview).where(col(AccessReview.request_id) == pending)
        ).all()
    assert len(reviews) == 1
    grants = client.get("/console/grants")
    assert "active" in grants.text
    revoke = re.search(r'action="(/console/grants/[^"]+/revoke)"', grants.text)
    assert revoke
    done = client.post(
        revoke.group(1), data={"reason": "misuse", "csrf": csrf}, follow_redirects=False
    )
    assert done.status_code == 303
    assert "revoked" in client.get("/console/grants").text
    twice = client.post(revoke.group(1), data={"reason": "again", "csrf": csrf})
    assert twice.status_code == 409


def test_pages_enforce_the_api_roles(
    client: TestClient, pending: str, make_principal: MakePrincipal
) -> None:
    sign_in(client, make_principal(Role.steward))
    assert client.get("/console/audit").status_code == 403
    assert client.get("/console/subjects").status_code == 403
    client.cookies.clear()
    csrf = sign_in(client, make_principal(Role.auditor))
    assert client.get("/console/audit").status_code == 200
    assert client.get(f"/console/requests/{pending}").status_code == 200
    approve = client.post(
        f"/console/requests/{pending}/approve", data={"comment": "x", "csrf": csrf}
    )
    assert approve.status_code == 403
    client.cookies.clear()
    sign_in(client, make_principal(Role.pipeline))
    assert client.get("/console/requests").status_code == 403


def test_wrong_key_is_slow_and_clear_and_expired_sessions_end(
    client: TestClient, engine: Engine, make_principal: MakePrincipal
) -> None:
    form = client.get("/console/login")
    token = CSRF.search(form.text)
    assert token
    started = time.perf_counter()
    r = client.post("/console/login", data={"api_key": "ldg_0000_wrong", "csrf": token.group(1)})
    assert r.status_code == 401
    assert "not accepted" in r.text
    assert time.perf_counter() - started >= 0.9
    assert client.get("/console/", follow_redirects=False).status_code == 303
    sign_in(client, make_principal(Role.auditor))
    with transaction(engine) as session:
        session.execute(update(WebSession).values(expires_at=utcnow()))
    r = client.get("/console/audit", follow_redirects=False)
    assert r.status_code == 303
    assert "expired" in r.headers["location"]


def test_sign_out_ends_the_session_server_side(
    client: TestClient, make_principal: MakePrincipal
) -> None:
    csrf = sign_in(client, make_principal(Role.auditor))
    stolen = client.cookies.get(COOKIE, path="/console")
    r = client.post("/console/logout", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303
    client.cookies.set(COOKIE, stolen or "", path="/console")
    assert client.get("/console/audit", follow_redirects=False).status_code == 303


def test_registrar_records_a_withdrawal(
    client: TestClient, world: dict[str, str], make_principal: MakePrincipal
) -> None:
    csrf = sign_in(client, make_principal(Role.registrar))
    missing = client.post(
        "/console/subjects",
        data={"issuer": "urn:test:hospital", "patient_id": "NOPE", "csrf": csrf},
    )
    assert missing.status_code == 404
    found = client.post(
        "/console/subjects",
        data={"issuer": "urn:test:hospital", "patient_id": "P001", "csrf": csrf},
        follow_redirects=False,
    )
    assert found.status_code == 303
    page = client.get(found.headers["location"])
    assert "Consent timeline" in page.text
    action = re.search(r'action="(/console/consents/[^"]+/withdraw)"', page.text)
    subject = re.search(r'name="subject_id" value="([^"]+)"', page.text)
    assert action
    assert subject
    r = client.post(
        action.group(1),
        data={"csrf": csrf, "subject_id": subject.group(1), "reason": "patient asked"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    after = client.get(found.headers["location"])
    assert "withdrawn" in after.text
    twice = client.post(
        action.group(1), data={"csrf": csrf, "subject_id": subject.group(1), "reason": "again"}
    )
    assert twice.status_code == 409


def test_rotating_a_key_ends_the_console_sessions_opened_with_it(
    client: TestClient, make_principal: MakePrincipal
) -> None:
    admin, key = make_principal(Role.admin), make_principal(Role.auditor)
    sign_in(client, key)
    assert client.get("/console/audit").status_code == 200
    me = client.get("/v1/principals/me", headers=auth(key)).json()["id"]
    rotated = client.post(f"/v1/principals/{me}/keys", headers=auth(admin))
    assert rotated.status_code == 201, rotated.text
    assert client.get("/v1/principals/me", headers=auth(key)).status_code == 401
    r = client.get("/console/audit", follow_redirects=False)
    assert r.status_code == 303
    assert "why=key-revoked" in r.headers["location"]
    assert "revoked" in client.get(r.headers["location"]).text
    client.cookies.clear()
    sign_in(client, rotated.json()["api_key"])
    assert client.get("/console/audit").status_code == 200


def test_disabling_a_principal_ends_its_console_sessions(
    client: TestClient, make_principal: MakePrincipal
) -> None:
    admin, key = make_principal(Role.admin), make_principal(Role.auditor)
    sign_in(client, key)
    me = client.get("/v1/principals/me", headers=auth(key)).json()["id"]
    assert client.post(f"/v1/principals/{me}/disable", headers=auth(admin)).status_code == 200
    r = client.get("/console/audit", follow_redirects=False)
    assert r.status_code == 303
    assert "why=" in r.headers["location"]


@pytest.mark.parametrize(
    "why", ["Your+account+is+locked.+Call+0800-FAKE", "%3Cb%3Ebold%3C/b%3E", "signed-out%00"]
)
def test_login_page_shows_only_known_notices(client: TestClient, why: str) -> None:
    r = client.get(f"/console/login?why={why}")
    assert r.status_code in (200, 422)
    assert "0800-FAKE" not in r.text
    assert "bold" not in r.text
    assert 'role="alert"' not in r.text


def test_login_page_notices_by_code(client: TestClient, make_principal: MakePrincipal) -> None:
    assert "Signed out." in client.get("/console/login?why=signed-out").text
    csrf = sign_in(client, make_principal(Role.auditor))
    r = client.post("/console/logout", data={"csrf": csrf}, follow_redirects=False)
    assert r.headers["location"].endswith("why=signed-out")
    assert "Signed out." in client.get(r.headers["location"]).text
    client.cookies.clear()
    r = client.get("/console/audit", follow_redirects=False)
    assert "why=sign-in" in r.headers["location"]


def test_nul_in_the_api_key_field_is_refused_not_stored(client: TestClient, engine: Engine) -> None:
    form = client.get("/console/login")
    token = CSRF.search(form.text)
    assert token
    r = client.post("/console/login", data={"api_key": "ldg_00\x0000_x", "csrf": token.group(1)})
    assert r.status_code in (401, 422)
    with snapshot(engine) as session:
        assert session.execute(select(WebSession)).first() is None


def test_request_page_shows_only_known_outcomes(
    client: TestClient, pending: str, make_principal: MakePrincipal
) -> None:
    sign_in(client, make_principal(Role.steward))
    r = client.get(f"/console/requests/{pending}?done=hacked+by+mallory")
    assert r.status_code == 200
    assert "mallory" not in r.text
    assert (
        "The request was approved." in client.get(f"/console/requests/{pending}?done=approved").text
    )
