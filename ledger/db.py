"""Engine, sessions and schema checks.

Write transactions on SQLite start with ``BEGIN IMMEDIATE`` so that two writers never both
read the log head and then collide; read-only sessions use a plain deferred ``BEGIN`` so
readers never queue behind writers (WAL lets them run side by side).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlmodel import SQLModel

import ledger.dbtypes  # noqa: F401  (sets the constraint naming convention)
from ledger.errors import SchemaNotCurrent, ServiceUnavailable

metadata = SQLModel.metadata  # naming convention set in ledger.dbtypes

READONLY = "ledger_readonly"


def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    # Take transaction control away from pysqlite so ``begin`` below decides the mode.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _sqlite_begin(conn: Connection) -> None:
    mode = "BEGIN" if conn.get_execution_options().get(READONLY) else "BEGIN IMMEDIATE"
    conn.exec_driver_sql(mode)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create the one engine a process uses for ``url``."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs
        )
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    return create_engine(url, **kwargs)


def session_factory(engine: Engine, *, readonly: bool = False) -> sessionmaker[Session]:
    bind = engine.execution_options(**{READONLY: True}) if readonly else engine
    return sessionmaker(bind=bind, expire_on_commit=False, autoflush=True)


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """A unit of work for CLI commands and scripts: commit on success, roll back on error."""
    with session_factory(engine)() as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


@contextmanager
def snapshot(engine: Engine) -> Iterator[Session]:
    """A read-only unit of work: on SQLite it takes no write lock, so long reads
    (verification, exports) never block writers."""
    with session_factory(engine, readonly=True)() as session:
        try:
            yield session
        finally:
            session.rollback()


def redacted(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def migrations_dir() -> Path:
    here = Path(__file__).resolve().parent
    for candidate in (here / "migrations", here.parent / "migrations"):
        if (candidate / "env.py").exists():
            return candidate
    raise FileNotFoundError("Alembic migrations directory not found next to the package")


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revisions() -> set[str]:
    """The code's schema heads (several while branches from parallel work are unmerged)."""
    from alembic.script import ScriptDirectory

    return set(ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads())


def head_revision() -> str:
    return ",".join(sorted(head_revisions()))


def current_revisions(engine: Engine) -> set[str]:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return set(MigrationContext.configure(conn).get_current_heads())


def current_revision(engine: Engine) -> str | None:
    return ",".join(sorted(current_revisions(engine))) or None


def upgrade(url: str, revision: str = "heads") -> None:
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    from alembic import command

    command.downgrade(alembic_config(url), revision)


def check_schema(engine: Engine) -> None:
    """Fail with a message naming the fix when the database is unreachable or behind."""
    try:
        current = current_revision(engine)
    except OperationalError as exc:
        raise ServiceUnavailable(
            f"cannot reach the database at {redacted(str(engine.url))}: {exc.orig}"
        ) from exc
    head = head_revision()
    if current != head:
        raise SchemaNotCurrent(
            f"database at {redacted(str(engine.url))} is at revision {current or 'none'}, "
            f"the code needs {head}: run `ledger db upgrade`"
        )


def ping(engine: Engine) -> bool:
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except OperationalError:
        return False
