"""The server log: one line per refused request, without its body or query; the trace
only for a fault, and only once."""

from __future__ import annotations

import logging
import sys
from pydoc import locate

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from ledger.db import make_engine
from ledger.http.request_log import AlreadyLogged, uvicorn_log_config
from ledger.principals.models import Role
from tests.conftest import MakePrincipal, auth

SECRET = "DOE^JANE-MRN-0042"  # stands for personal data a caller sent


def _ledger_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("ledger")]


def test_a_refused_request_logs_one_line_without_body_or_query(
    client: TestClient, make_principal: MakePrincipal, caplog: pytest.LogCaptureFixture
) -> None:
    key = make_principal(Role.registrar)
    caplog.set_level(logging.INFO, logger="ledger")
    caplog.clear()
    r = client.post(
        f"/v1/subjects?note={SECRET}",
        headers=auth(key),
        json={"issuer": "urn:x", "patient_id": SECRET, "unexpected": SECRET},
    )
    assert r.status_code == 422
    (record,) = _ledger_records(caplog)
    line = record.getMessage()
    assert line.startswith("POST /v1/subjects 422 invalid-request ")
    assert record.levelno == logging.INFO
    assert record.exc_info is None
    assert SECRET not in caplog.text

    caplog.clear()
    assert client.get("/v1/principals/me").status_code == 401
    (record,) = _ledger_records(caplog)
    assert record.getMessage().startswith("GET /v1/principals/me 401 unauthenticated ")


def test_a_fault_logs_its_trace_once(
    app: FastAPI, client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    @app.get("/test-fault")
    def fault() -> None:
        raise RuntimeError("the handler broke")

    caplog.set_level(logging.INFO, logger="ledger")
    caplog.clear()
    r = client.get("/test-fault")
    assert r.status_code == 500
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "the handler broke" not in r.text
    traces = [rec for rec in _ledger_records(caplog) if rec.exc_info]
    assert len(traces) == 1
    assert "Traceback" in caplog.text
    assert "RuntimeError: the handler broke" in caplog.text
    lines = [rec.getMessage() for rec in _ledger_records(caplog) if not rec.exc_info]
    assert lines == [lines[0]]
    assert lines[0].startswith("GET /test-fault 500 internal ")
    # The server's own copy of the trace (Starlette re-raises after answering) is dropped.
    exc_info = traces[0].exc_info
    assert exc_info is not None
    server_copy = logging.LogRecord(
        "uvicorn.error", logging.ERROR, __file__, 1, "Exception in ASGI application", (), exc_info
    )
    assert AlreadyLogged().filter(server_copy) is False
    try:
        raise ValueError("another")
    except ValueError:
        other = sys.exc_info()
    unrelated = logging.LogRecord("uvicorn.error", logging.ERROR, __file__, 1, "x", (), other)
    assert AlreadyLogged().filter(unrelated) is True


def test_serve_turns_uvicorns_query_logging_off_and_keeps_the_ledgers() -> None:
    config = uvicorn_log_config()
    assert config["loggers"]["ledger"]["level"] == "INFO"
    assert config["loggers"]["uvicorn.error"]["filters"] == ["already_logged"]
    assert locate(config["filters"]["already_logged"]["()"]) is AlreadyLogged


def test_database_errors_do_not_carry_what_was_sent(db_url: str) -> None:
    engine: Engine = make_engine(db_url)
    try:
        with engine.connect() as conn, pytest.raises(DBAPIError) as caught:
            conn.execute(
                text("SELECT no_such_column FROM log_entries WHERE seq = :v"), {"v": SECRET}
            )
    finally:
        engine.dispose()
    assert SECRET not in str(caught.value)
