"""Cursor pagination: stable under inserts, unlike offsets, and cheap on large tables."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field
from sqlalchemy import Select
from sqlalchemy.orm import Session

from ledger.errors import InvalidInput
from ledger.limits import label_problem

T = TypeVar("T")
MAX_LIMIT = 1000


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` to get the next page; null on the last."
    )


def encode_cursor(value: object) -> str:
    return base64.urlsafe_b64encode(str(value).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = base64.b64decode(padded, altchars=b"-_", validate=True).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("cursor is not one this server issued") from exc
    if label_problem(value):  # cursors carry identifiers: never NUL or other controls
        raise InvalidInput("cursor is not one this server issued")
    return value


def paginate(
    session: Session,
    query: Select[Any],
    key: Any,
    cursor: str | None,
    limit: int,
) -> tuple[Sequence[Any], str | None]:
    """Return one page of ``query`` ordered by the unique mapped column ``key``."""
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}")
    if cursor is not None:
        raw = decode_cursor(cursor)
        python_type = key.type.python_type
        try:
            after = python_type(raw)
        except ValueError as exc:
            raise InvalidInput("cursor is not one this server issued") from exc
        query = query.where(key > after)
    rows = session.execute(query.order_by(key).limit(limit + 1)).scalars().all()
    if len(rows) > limit:
        return rows[:limit], encode_cursor(getattr(rows[limit - 1], str(key.key)))
    return rows, None
