"""Reading the image attributes the one-image-at-a-time decision path needs (release
re-checks, authorize) as ``ImageRow``s. Whole datasets are read from their packed columns
instead (``ledger.images.columns``).

``ImageRow`` is a NamedTuple, not a dataclass: authorize builds one per image of a study on
every cache miss straight from a driver row, and ``ImageRow._make`` costs a fifth of a
frozen dataclass's ``__init__``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any, NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from ledger import dialect
from ledger.consent.in_force import CHUNK
from ledger.images import columns
from ledger.images.models import Image


class ImageRow(NamedTuple):
    id: str
    subject_id: str
    modality: str | None
    body_part: str | None
    study_date: date | str | None  # plain driver SQL on SQLite gives the ISO text
    burned_in: str | None
    manufacturer: str | None
    leaf_hash: bytes
    erased_at: datetime | str | None


ROW = (*columns.selected(), col(Image.erased_at))
assert tuple(c.key for c in ROW) == ImageRow._fields  # one column list, one field list
# Authorize reads a study on every cache miss: plain driver SQL, built once from ROW.
ALL = f"SELECT {', '.join(c.key for c in ROW)} FROM images"  # noqa: S608 (our column names)
STUDY = f"{ALL} WHERE study_uid = ?"


def fetch(session: Session, sql: str, params: Sequence[Any]) -> list[Any]:
    """Rows of driver SQL (``?`` markers) on the session's connection and transaction."""
    conn = session.connection()
    sql = dialect.driver_sql(conn, sql)
    cursor = conn.connection.cursor()
    try:
        cursor.execute(sql, params)
        return list(cursor.fetchall())
    finally:
        cursor.close()


def of_study(session: Session, study_uid: str) -> list[ImageRow]:
    """The images of one study that are not erased (authorize reads them with the
    study's consents in one statement: ``access.study_read``)."""
    rows = map(ImageRow._make, fetch(session, STUDY, (study_uid,)))
    return [r for r in rows if r.erased_at is None]


def of_images(session: Session, image_ids: Sequence[str]) -> list[ImageRow]:
    """Rows for a few images (a release batch), in the order given."""
    found: dict[str, ImageRow] = {}
    unique = list(dict.fromkeys(image_ids))
    for i in range(0, len(unique), CHUNK):
        query = select(*ROW).where(col(Image.id).in_(unique[i : i + CHUNK]))
        for row in map(ImageRow._make, session.execute(query)):
            found[row.id] = row
    return [found[i] for i in image_ids if i in found]
