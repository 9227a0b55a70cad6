"""Builds the application's long-lived parts once, from settings.

Every front door (HTTP, console, CLI, demo) gets its keys, object store, vault, policy set
and authorizer from here, so a configured store or key directory means the same thing
whichever door a request comes through.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ledger.config import Settings
from ledger.images.store import FilesystemStore, ObjectStore
from ledger.keystore import KeyRing, load_keyring
from ledger.provenance.checkpoints import LogTree

if TYPE_CHECKING:  # the decision path is imported where it is built, not by CLI commands
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session, sessionmaker

    from ledger.access import release
    from ledger.access.authorize import Authorizer
    from ledger.access.service import Context
    from ledger.access.slots import Slots
    from ledger.images.columns import Vault
    from ledger.policy.engine import PolicySet


def keys(settings: Settings) -> KeyRing:
    return load_keyring(settings.keys_dir, settings.jws_alg)


def store(settings: Settings) -> ObjectStore:
    """The object store for originals and sealed dataset columns."""
    return FilesystemStore(settings.objects_dir)


def vault(settings: Settings, keyring: KeyRing | None = None) -> Vault:
    """Where datasets' packed columns are kept (``ledger.images.columns``)."""
    from ledger.images.columns import Vault

    return Vault(store(settings), (keyring or keys(settings)).master_key)


def policies(settings: Settings) -> PolicySet:
    from ledger.policy.service import configured

    return configured(settings)


def context(settings: Settings, keyring: KeyRing | None = None) -> Context:
    """What the decision path needs beyond a session, for the CLI and scripts."""
    from ledger.access.service import Context

    keyring = keyring or keys(settings)
    return Context(settings, keyring, policies(settings), vault(settings, keyring))


@dataclass
class AppState:
    """The server's long-lived parts, built once per process by ``build``."""

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
        from ledger.images.columns import Vault

        return Vault(self.store, self.keys.master_key)

    def context(self) -> Context:
        from ledger.access.service import Context

        return Context(self.settings, self.keys, self.policies, self.vault())

    def release_desk(self) -> release.Desk:
        from ledger.access import release

        return release.Desk(
            self.keys, self.policies, self.store, self.download_slots, self.write_sessions
        )


def build(settings: Settings, *, check_db: bool = True) -> AppState:
    """The server's state; refuses an un-migrated database or a home without keys."""
    from ledger.access import slots
    from ledger.access.authorize import Authorizer
    from ledger.db import check_schema, make_engine, session_factory

    keyring = keys(settings)
    engine = make_engine(settings.resolved_database_url)
    if check_db:
        check_schema(engine)
    return AppState(
        settings=settings,
        engine=engine,
        write_sessions=session_factory(engine),
        read_sessions=session_factory(engine, readonly=True),
        keys=keyring,
        store=store(settings),
        policies=policies(settings),
        download_slots=slots.for_engine(settings.max_concurrent_downloads, engine),
        authorizer=Authorizer(engine, keyring, settings.issuer),
    )
