"""Creating and opening an installation (LEDGER_HOME plus its database)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, func, select

from ledger.config import Settings
from ledger.db import check_schema, make_engine, transaction, upgrade
from ledger.errors import Conflict
from ledger.keystore import create_keys, is_initialised, make_private_dir
from ledger.principals import service as principals
from ledger.principals.models import Principal, PrincipalKind, Role
from ledger.principals.schemas import PrincipalCreate, PrincipalWithKey


@dataclass
class Initialised:
    home: str
    database_url: str
    admin: PrincipalWithKey


def init_home(settings: Settings, *, admin_name: str = "admin") -> Initialised:
    """Create keys (0600), migrate the database and create the first admin.

    Refuses an already initialised home so keys are never replaced by accident: a
    replaced pseudonym key would silently split every patient into a new subject.
    """
    if is_initialised(settings.keys_dir):
        raise Conflict(f"{settings.home} is already initialised; use it or choose another home")
    make_private_dir(settings.home)
    create_keys(settings.keys_dir)
    url = settings.resolved_database_url
    upgrade(url)
    database = settings.home / "ledger.db"
    if database.exists():
        database.chmod(0o600)
    engine = make_engine(url)
    try:
        with transaction(engine) as session:
            if session.execute(select(func.count()).select_from(Principal)).scalar_one():
                raise Conflict("the database already has principals; it belongs to another home")
            admin = principals.create(
                session,
                PrincipalCreate(name=admin_name, kind=PrincipalKind.person, roles=[Role.admin]),
                actor=None,
            )
    finally:
        engine.dispose()
    return Initialised(str(settings.home.resolve()), url, admin)


def open_engine(settings: Settings) -> Engine:
    """An engine on a migrated database, or a LedgerError naming the command to run."""
    engine = make_engine(settings.resolved_database_url)
    check_schema(engine)
    return engine
