"""Shared fixtures. The suite runs on SQLite by default and on PostgreSQL when
LEDGER_TEST_DATABASE_URL points at a server (then only database tests run)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from ledger.config import Settings
from ledger.db import make_engine, transaction, upgrade
from ledger.keystore import create_keys
from ledger.principals import service as principals
from ledger.principals.models import PrincipalKind, Role
from ledger.principals.schemas import PrincipalCreate
from ledger.server import create_app
from tests import dbutil

DB_FIXTURES = {"db_url", "empty_db_url"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if dbutil.pg_base_url() is None:
        return
    keep, drop = [], []
    for item in items:
        uses_db = DB_FIXTURES & set(getattr(item, "fixturenames", ()))
        (keep if uses_db else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="session")
def backend() -> str:
    return "postgresql" if dbutil.pg_base_url() else "sqlite"


@pytest.fixture(scope="session")
def _template_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    base = dbutil.pg_base_url()
    if base:
        url = dbutil.create_pg_database(base)
        upgrade(url)
        yield url
        dbutil.drop_pg_database(url)
    else:
        path = tmp_path_factory.mktemp("template") / "template.db"
        url = dbutil.sqlite_url(path)
        upgrade(url)
        yield str(path)


@pytest.fixture
def db_url(_template_db: str, tmp_path: Path) -> str:
    """A migrated, empty database for one test."""
    if dbutil.pg_base_url():
        dbutil.truncate_all(_template_db)
        return _template_db
    return dbutil.copy_sqlite(Path(_template_db), tmp_path / "ledger.db")


@pytest.fixture
def empty_db_url(tmp_path: Path) -> Iterator[str]:
    """A database with no tables at all, for migration tests."""
    base = dbutil.pg_base_url()
    if base:
        url = dbutil.create_pg_database(base, prefix="ledger_empty")
        yield url
        dbutil.drop_pg_database(url)
    else:
        yield dbutil.sqlite_url(tmp_path / "empty.db")


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    home = tmp_path / "home"
    create_keys(home / "keys")
    return Settings(home=home, database_url=db_url, checkpoint_interval=0, hash_worker=False)


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    eng = make_engine(settings.resolved_database_url)
    yield eng
    eng.dispose()


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


MakePrincipal = Callable[..., str]


@pytest.fixture
def make_principal(engine: Engine) -> MakePrincipal:
    """Create a principal with the given roles and return its API key."""
    counter = iter(range(1_000_000))

    def make(*roles: Role, name: str | None = None, kind: PrincipalKind | None = None) -> str:
        n = next(counter)
        kind = kind or (PrincipalKind.pipeline if Role.pipeline in roles else PrincipalKind.person)
        data = PrincipalCreate(name=name or f"p{n}-{'-'.join(roles)}", kind=kind, roles=list(roles))
        with transaction(engine) as session:
            return principals.create(session, data, actor=None).api_key

    return make


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
