"""FastAPI dependencies shared by every router and console page: the app state and the
request's unit of work."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from ledger.wiring import AppState

__all__ = [
    "AppState",
    "SessionDep",
    "StateDep",
    "WriteSessionDep",
    "app_state",
    "state_of",
    "unit_of_work",
]


def state_of(request: Request) -> AppState:
    state: AppState = request.app.state.ledger
    return state


async def app_state(request: Request) -> AppState:
    """The dependency: async, so FastAPI does not send it to the thread pool (each sync
    dependency costs a thread hand-off per request)."""
    return state_of(request)


def _session(request: Request) -> Iterator[Session]:
    """One transaction per request, committed once after the handler returns.

    Scope ``function`` makes the commit happen before the response is sent, so a client
    never sees success for a change that then failed to commit.
    """
    yield from _unit_of_work(request, readonly=request.method in ("GET", "HEAD", "OPTIONS"))


def _write_session(request: Request) -> Iterator[Session]:
    """A write transaction whatever the method: for reads that log what they release."""
    yield from _unit_of_work(request, readonly=False)


def _unit_of_work(request: Request, *, readonly: bool) -> Iterator[Session]:
    with unit_of_work(state_of(request), readonly=readonly) as session:
        yield session


@contextmanager
def unit_of_work(state: AppState, *, readonly: bool) -> Iterator[Session]:
    """A session whose transaction is committed (rolled back when ``readonly``) once the
    caller is done with it, and rolled back on any error: a dependency's, or a route's
    that runs its whole call in one thread hand-off."""
    factory = state.read_sessions if readonly else state.write_sessions
    with factory() as session:
        try:
            yield session
            if readonly:
                session.rollback()
            else:
                session.commit()
        except BaseException:
            session.rollback()
            raise


SessionDep = Annotated[Session, Depends(_session, scope="function")]
# A GET that appends to the log (a release) needs a transaction that commits.
WriteSessionDep = Annotated[Session, Depends(_write_session, scope="function")]
StateDep = Annotated[AppState, Depends(app_state)]
