"""Engine, sessions and schema checks.

Write transactions on SQLite start with ``BEGIN IMMEDIATE`` so that two writers never both
read the log head and then collide; read-only sessions use a plain deferred ``BEGIN`` so
readers never queue behind writers (WAL lets them run side by side).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Engine, Table, create_engine, event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlmodel import SQLModel

import ledger.dbtypes  # noqa: F401  (sets the constraint naming convention)
from ledger.dialect import is_postgres, marker
from ledger.errors import SchemaNotCurrent, ServiceUnavailable

metadata = SQLModel.metadata  # naming convention set in ledger.dbtypes

READONLY = "ledger_readonly"


def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    # Take transaction control away from pysqlite so ``begin`` below decides the mode.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=30000")
    # Switching modes takes a lock that does not wait for busy writers; only switch once,
    # when the file is new, not on every connection.
    if cur.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
        cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    # 64 MiB page cache (default 2 MiB): bulk imports insert into several random-keyed
    # indexes (pseudonyms, leaf hashes), which thrash a small cache.
    cur.execute("PRAGMA cache_size=-65536")
    cur.execute("PRAGMA temp_store=MEMORY")
    cur.close()


def _sqlite_begin(conn: Connection) -> None:
    mode = "BEGIN" if conn.get_execution_options().get(READONLY) else "BEGIN IMMEDIATE"
    conn.exec_driver_sql(mode)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create the one engine a process uses for ``url``.

    Statement parameters are left out of error messages: they hold what callers sent, and
    an error's message ends up in the server log."""
    kwargs.setdefault("hide_parameters", True)
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


def driver_rows(session: Session, query: Any, params: dict[str, Any] | None = None) -> list[Any]:
    """Rows as the driver returns them (dates are text on SQLite): SQLAlchemy's per-row
    processing costs more than the query itself over hundreds of thousands of rows."""
    result = session.connection().execute(query, params)
    try:
        return list(result.cursor.fetchall())
    finally:
        result.close()


@contextmanager
def driver_cursor(session: Session) -> Iterator[Any]:
    """A cursor of the driver's own, on the session's connection and transaction: for what
    SQLAlchemy does not expose, such as psycopg's binary results and ``COPY``."""
    cursor = session.connection().connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        yield cursor
    finally:
        cursor.close()


def bind_processor(column_type: Any, dialect: Any) -> Any:
    processor = column_type.bind_processor(dialect)
    if (
        processor is None
        and is_postgres(dialect)
        and isinstance(column_type.dialect_impl(dialect), JSON)
    ):
        # SQLAlchemy leaves JSON to psycopg's adapters via casts in the SQL it renders;
        # raw SQL needs the value wrapped instead.
        from psycopg.types.json import Jsonb  # only installed with the postgres extra

        return Jsonb
    return processor


def _apply(process: Any, raw: list[Any]) -> list[Any]:
    """Bind-process one column, each distinct value once: equal hashable values (a batch's
    shared timestamp) and the same object (a JSON document shared by many rows)."""
    done: dict[Any, Any] = {}
    by_id: dict[int, Any] = {}
    out: list[Any] = []
    for value in raw:
        if value is None:
            out.append(None)
            continue
        try:
            bound = done.get(value, _MISSING)
        except TypeError:  # unhashable: key on identity (the rows keep the objects alive)
            bound = by_id.get(id(value), _MISSING)
            if bound is _MISSING:
                bound = by_id[id(value)] = process(value)
            out.append(bound)
            continue
        if bound is _MISSING:
            bound = done[value] = process(value)
        out.append(bound)
    return out


_MISSING = object()


def bulk_insert(
    session: Session, table: Table, rows: Sequence[dict[str, Any]], batch: int = 5_000
) -> None:
    """Insert many rows with one ``executemany`` per batch, straight to the driver.

    Values go through each column type's own bind processor (so they are exactly what
    SQLAlchemy would send), but without its per-row statement machinery, which dominates
    at bulk-import sizes.
    """
    if not rows:
        return
    conn = session.connection()
    dialect = conn.dialect
    names = list(rows[0])
    processors = [bind_processor(table.c[name].type, dialect) for name in names]
    mark = marker(dialect)
    preparer = dialect.identifier_preparer
    sql = "INSERT INTO {} ({}) VALUES ({})".format(  # noqa: S608 (identifiers from our metadata)
        preparer.format_table(table),
        ", ".join(preparer.quote(n) for n in names),
        ", ".join([mark] * len(names)),
    )
    columns = []
    for name, process in zip(names, processors, strict=True):
        raw = [row[name] for row in rows]
        if process is not None:
            raw = _apply(process, raw)
        columns.append(raw)
    values = list(zip(*columns, strict=True))
    for i in range(0, len(values), batch):
        conn.exec_driver_sql(sql, values[i : i + batch])
