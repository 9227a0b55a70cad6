"""Reading the image attributes the one-image-at-a-time decision path needs (release
re-checks, authorize), as plain rows: (image id, subject id, modality, body part, study
date, burned-in, manufacturer, leaf hash, erased_at). Whole datasets are read from their
packed columns instead (``ledger.images.columns``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from ledger import dialect
from ledger.consent.in_force import CHUNK
from ledger.images import columns
from ledger.images.models import Image

ROW = (*columns.selected(), col(Image.erased_at))
# Authorize reads a study on every cache miss: plain driver SQL, built once from ROW.
ALL = f"SELECT {', '.join(c.key for c in ROW)} FROM images"  # noqa: S608 (our column names)
STUDY = f"{ALL} WHERE study_uid = ?"


def _fetch(session: Session, sql: str, *params: Any) -> list[Any]:
    conn = session.connection()
    sql = dialect.driver_sql(conn, sql)
    cursor = conn.connection.cursor()
    try:
        cursor.execute(sql, params)
        return list(cursor.fetchall())
    finally:
        cursor.close()


def of_study(session: Session, study_uid: str) -> list[tuple[Any, ...]]:
    """The images of one study that are not erased (authorize)."""
    return [r for r in _fetch(session, STUDY, study_uid) if r[8] is None]


def of_images(session: Session, image_ids: Sequence[str]) -> list[tuple[Any, ...]]:
    """Rows for a few images (a release batch), in the order given."""
    found: dict[str, tuple[Any, ...]] = {}
    unique = list(dict.fromkeys(image_ids))
    for i in range(0, len(unique), CHUNK):
        for row in session.execute(select(*ROW).where(col(Image.id).in_(unique[i : i + CHUNK]))):
            found[row[0]] = tuple(row)
    return [found[i] for i in image_ids if i in found]
