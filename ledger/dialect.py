"""Everything that differs between SQLite and PostgreSQL, in one module.

Services write SQL once (driver SQL with ``?`` markers, or SQLAlchemy constructs) and ask
here for what each database needs: the driver's parameter markers, an insert that can
ignore conflicts, whether PostgreSQL-only fast paths (binary ``COPY``, advisory locks)
apply. A new backend is then a change to this file, not a search through the domains.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, Dialect, Engine
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

Bind = Engine | Connection | Session


def _dialect(bind: Bind | Dialect) -> Dialect:
    if isinstance(bind, Dialect):
        return bind
    if isinstance(bind, Session):
        return bind.get_bind().dialect
    return bind.dialect


def is_postgres(bind: Bind | Dialect) -> bool:
    """True on PostgreSQL, where the binary ``COPY`` readers and advisory locks apply."""
    return _dialect(bind).name == "postgresql"


def marker(bind: Bind | Dialect) -> str:
    """The driver's positional parameter marker: ``?`` (sqlite3) or ``%s`` (psycopg)."""
    return "?" if _dialect(bind).paramstyle == "qmark" else "%s"


@lru_cache(maxsize=256)
def _with_marker(sql: str, mark: str) -> str:
    return sql if mark == "?" else sql.replace("?", mark)


def driver_sql(bind: Bind | Dialect, sql: str) -> str:
    """``sql``, written with ``?`` markers (and no literal ``?``), for this driver."""
    return _with_marker(sql, marker(bind))


def insert_ignoring_conflicts(bind: Bind, table: Any, index_elements: list[str]) -> Any:
    """``INSERT ... ON CONFLICT (index_elements) DO NOTHING`` for ``table`` (a model or a
    table), to which the caller adds values: both databases spell it alike, but each
    through its own SQLAlchemy construct."""
    insert = pg_insert if is_postgres(bind) else sqlite_insert
    return insert(table).on_conflict_do_nothing(index_elements=index_elements)
