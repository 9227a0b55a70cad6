"""The console in a real browser (Debian's chromium, driven by Playwright): a steward
approves, a registrar records a withdrawal, an auditor sees it; CSRF and role refusals.

Screenshots of the main pages go to ``LEDGER_SCREENSHOT_DIR`` (the README's come from a
run with ``LEDGER_SCREENSHOT_DIR=docs/screenshots``), else to the test's temp directory.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from ledger.config import Settings
from ledger.principals.models import Role
from ledger.server import create_app
from tests.access.test_access_api import _file
from tests.conftest import MakePrincipal

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
playwright = pytest.importorskip("playwright.sync_api")

if not Path(CHROMIUM).exists():
    if os.environ.get("LEDGER_REQUIRE_BROWSER"):
        raise RuntimeError(f"chromium not found at {CHROMIUM}; .ci/run installs it")
    pytest.skip("Debian's chromium is not installed; .ci/run installs it", allow_module_level=True)


@pytest.fixture
def live(settings: Settings) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(100):
        if server.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def browser() -> Iterator[object]:
    with playwright.sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield instance
        instance.close()


def _shots(tmp_path: Path) -> Path:
    target = Path(os.environ.get("LEDGER_SCREENSHOT_DIR") or tmp_path)
    target.mkdir(parents=True, exist_ok=True)
    return target


def _sign_in(page: object, base: str, key: str) -> None:
    page.goto(f"{base}/console/login")  # type: ignore[attr-defined]
    page.get_by_label("Your API key").fill(key)  # type: ignore[attr-defined]
    page.get_by_role("button", name="Sign in").click()  # type: ignore[attr-defined]
    page.wait_for_url(f"{base}/console/")  # type: ignore[attr-defined]


def _sign_out(page: object) -> None:
    page.get_by_role("button", name="Sign out").click()  # type: ignore[attr-defined]


def test_steward_registrar_and_auditor_in_a_browser(
    live: str,
    browser: object,
    client: object,
    world: dict[str, str],
    make_principal: MakePrincipal,
    tmp_path: Path,
) -> None:
    shots = _shots(tmp_path)
    request_id = _file(client, make_principal(Role.pipeline), world["all"]).json()["id"]  # type: ignore[arg-type]
    steward = make_principal(Role.steward, name="Dr Ada Steward")
    registrar = make_principal(Role.registrar, name="Grace Registrar")
    auditor = make_principal(Role.auditor, name="Alan Auditor")
    page = browser.new_page(viewport={"width": 1200, "height": 900})  # type: ignore[attr-defined]

    # Wrong key: a clear page, no session.
    page.goto(f"{live}/console/login")
    page.get_by_label("Your API key").fill("ldg_0000000000000000_nope")
    page.get_by_role("button", name="Sign in").click()
    assert page.get_by_text("That key was not accepted.").is_visible()
    page.screenshot(path=str(shots / "login.png"))

    # Steward: queue → request → approve → the grant appears.
    _sign_in(page, live, steward)
    page.get_by_role("link", name="Requests").first.click()
    page.get_by_role("link", name=request_id[:8]).click()
    assert page.get_by_text("0 of 1").is_visible()
    assert page.locator("svg.bars").count() == 5
    page.screenshot(path=str(shots / "request.png"), full_page=True)
    page.get_by_label("Comment (kept with the review)").fill("Ethics approval on file.")
    page.get_by_role("button", name="Approve").click()
    assert page.get_by_text("The request was approved.").is_visible()
    page.get_by_role("link", name="Grants").first.click()
    assert page.get_by_role("cell", name="active").is_visible()
    page.screenshot(path=str(shots / "grants.png"), full_page=True)
    # A steward may not open auditor pages.
    page.goto(f"{live}/console/audit")
    assert page.get_by_text("This page needs one of the roles").is_visible()
    page.goto(f"{live}/console/")
    _sign_out(page)

    # Registrar: find P001, withdraw; a forged CSRF token is refused first.
    _sign_in(page, live, registrar)
    page.get_by_role("link", name="Subjects").click()
    page.get_by_label("Issuer of the patient id").fill("urn:test:hospital")
    page.get_by_label("Patient id", exact=True).fill("P001")
    page.get_by_role("button", name="Find").click()
    subject_url = page.url
    assert page.get_by_role("heading", name="Consent timeline").is_visible()
    page.evaluate("document.querySelectorAll('input[name=csrf]')[1].value = 'forged'")
    page.get_by_role("button", name="Withdraw this consent").first.click()
    assert page.get_by_text("security token did not match").is_visible()
    page.goto(subject_url)
    page.get_by_role("button", name="Withdraw this consent").first.click()
    assert page.get_by_text("withdrawn", exact=False).first.is_visible()
    page.screenshot(path=str(shots / "subject.png"), full_page=True)
    _sign_out(page)

    # Auditor: verify the log, then the subject's lineage shows the withdrawal.
    _sign_in(page, live, auditor)
    page.get_by_role("link", name="Audit").first.click()
    page.get_by_role("button", name="Verify the whole log now").click()
    assert page.get_by_text("intact").is_visible()
    page.screenshot(path=str(shots / "audit.png"), full_page=True)
    page.get_by_label("Of a").select_option("subject")
    page.get_by_label("Id", exact=True).fill(subject_url.rsplit("/", 1)[1])
    page.get_by_role("button", name="Show").click()
    assert page.get_by_role("cell", name="consent.withdrawn").is_visible()
    page.screenshot(path=str(shots / "lineage.png"), full_page=True)
    page.close()
