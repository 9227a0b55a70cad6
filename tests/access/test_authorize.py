"""The authorizer's batched decision log: a flush returns only once its batch is durable,
and a batch whose commit fails is kept for the next flush."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from ledger.db import snapshot
from ledger.provenance.models import LogEntry


def _decision_batches(engine: Engine) -> list[dict[str, Any]]:
    with snapshot(engine) as session:
        rows = session.execute(
            select(LogEntry.entry)
            .where(LogEntry.event_type == "authorize.decisions")
            .order_by(LogEntry.seq)
        ).scalars()
        return [json.loads(bytes(r))["data"] for r in rows]


def _with_commit(sessions: Callable[[], Session], commit: Callable[[Session], None]) -> Any:
    def make() -> Session:
        session = sessions()
        real = session.commit
        session.commit = lambda: commit(session) or real()  # type: ignore[method-assign]
        return session

    return make


def test_a_concurrent_flush_returns_only_once_the_batch_is_durable(
    app: FastAPI, engine: Engine
) -> None:
    state = app.state.ledger
    authorizer = state.authorizer
    for n in range(7):
        authorizer.refused(pipeline_id="p", study_uid=f"1.2.{n}")
    committing = threading.Event()
    committed_at: list[float] = []

    def slow(_: Session) -> None:
        committing.set()
        time.sleep(0.5)

    def first() -> None:
        authorizer.flush_pending(_with_commit(state.write_sessions, slow))
        committed_at.append(time.monotonic())

    thread = threading.Thread(target=first)
    thread.start()
    assert committing.wait(10)
    authorizer.flush_pending(state.write_sessions)  # its decisions are in the first's batch
    returned_at = time.monotonic()
    batches = _decision_batches(engine)  # durable when the second flush returned
    assert [b["count"] for b in batches] == [7]
    thread.join(10)
    assert committed_at
    assert committed_at[0] <= returned_at + 0.05
    assert authorizer.pending == 0


def test_a_batch_whose_commit_fails_is_logged_by_the_next_flush_exactly_once(
    app: FastAPI, engine: Engine
) -> None:
    state = app.state.ledger
    authorizer = state.authorizer
    for n in range(5):
        authorizer.refused(pipeline_id="p", study_uid=f"1.2.{n}")

    def fail(_: Session) -> None:
        raise RuntimeError("the database went away")

    with pytest.raises(RuntimeError):
        authorizer.flush_pending(_with_commit(state.write_sessions, fail))
    assert authorizer.pending == 5
    assert _decision_batches(engine) == []
    authorizer.refused(pipeline_id="q", study_uid="1.2.99")
    assert authorizer.flush_pending(state.write_sessions) == 6
    assert authorizer.flush_pending(state.write_sessions) == 0
    batches = _decision_batches(engine)
    assert len(batches) == 1
    assert batches[0]["count"] == 6
    assert batches[0]["unknown_studies"] == 6
    assert batches[0]["pipelines"] == ["p", "q"]
