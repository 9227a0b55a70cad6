"""FastAPI dependencies shared by every router: the request's session and app state."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from ledger.access.authorize import Authorizer
from ledger.access.slots import Slots
from ledger.config import Settings
from ledger.images.columns import Vault
from ledger.images.store import ObjectStore
from ledger.keystore import KeyRing
from ledger.policy.engine import PolicySet
from ledger.provenance.checkpoints import LogTree


@dataclass
class AppState:
    settings: Settings
    engine: Engine
    write_sessions: sessionmaker[Session]
    read_sessions: sessionmaker[Session]
    keys: KeyRing
    store: ObjectStore
    policies: PolicySet
    download_slots: Slots
    authorizer: Authorizer
    log_tree: LogTree = field(default_factory=LogTree)

    def vault(self) -> Vault:
        """Where datasets' packed columns are kept (``ledger.images.columns``)."""
        return Vault(self.store, self.keys.master_key)


def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.ledger
    return state


def _session(request: Request) -> Iterator[Session]:
    """One transaction per request, committed once after the handler returns.

    Scope ``function`` makes the commit happen before the response is sent, so a client
    never sees success for a change that then failed to commit.
    """
    state = app_state(request)
    readonly = request.method in ("GET", "HEAD", "OPTIONS")
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
StateDep = Annotated[AppState, Depends(app_state)]
