"""``Idempotency-Key`` for POSTs that pipelines retry.

The stored response is written in the same transaction as the change, so a retry after a
successful commit replays the first answer, and a retry of a failed request runs again.
The same key with a different body is refused rather than silently answered with the
first request's response.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy import Column, Integer, String
from sqlalchemy.orm import Session
from sqlmodel import Field, SQLModel

from ledger.canonical import canonical
from ledger.clock import utcnow
from ledger.dbtypes import JSONType, UTCDateTime
from ledger.errors import InvalidInput

M = TypeVar("M", bound=BaseModel)
MAX_KEY_LENGTH = 200


class IdempotencyRecord(SQLModel, table=True):
    __tablename__ = "idempotency_records"

    principal_id: str = Field(sa_column=Column(String(36), primary_key=True))
    key: str = Field(sa_column=Column(String(MAX_KEY_LENGTH), primary_key=True))
    route: str = Field(sa_column=Column(String(200), nullable=False))
    request_hash: str = Field(sa_column=Column(String(64), nullable=False))
    status_code: int = Field(sa_column=Column(Integer, nullable=False))
    response: dict[str, Any] = Field(sa_column=Column(JSONType, nullable=False))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )


def request_hash(route: str, payload: Any) -> str:
    return hashlib.sha256(canonical({"route": route, "body": payload})).hexdigest()


def run_once(
    session: Session,
    *,
    principal_id: str,
    key: str | None,
    route: str,
    payload: Any,
    model: type[M],
    action: Callable[[], M],
    status_code: int = 201,
) -> M:
    """Run ``action`` unless this principal already ran it under ``key``; replay if so."""
    if key is None:
        return action()
    if not key.strip() or len(key) > MAX_KEY_LENGTH:
        raise InvalidInput(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters")
    digest = request_hash(route, payload)
    previous = session.get(IdempotencyRecord, (principal_id, key))
    if previous is not None:
        if previous.request_hash != digest or previous.route != route:
            raise InvalidInput(
                "this Idempotency-Key was already used for a different request; use a new key"
            )
        return model.model_validate(previous.response)
    result = action()
    session.add(
        IdempotencyRecord(
            principal_id=principal_id,
            key=key,
            route=route,
            request_hash=digest,
            status_code=status_code,
            response=result.model_dump(mode="json"),
        )
    )
    session.flush()
    return result
