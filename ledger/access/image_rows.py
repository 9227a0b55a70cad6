"""Reading the image attributes the decision path needs, as plain driver rows:
(image id, subject id, modality, body part, study date, burned-in, manufacturer, leaf hash,
erased_at). A million rows through SQLAlchemy's row processing cost seconds, so these go
straight to the driver; dates stay as the driver gives them (text on SQLite) until a
consent scope needs one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from ledger.consent import facts
from ledger.images.models import Image

COLUMNS = (
    "id, subject_id, modality, body_part, study_date, burned_in, manufacturer, leaf_hash, erased_at"
)
JOINED_QMARK = (
    "SELECT i.id, i.subject_id, i.modality, i.body_part, i.study_date, i.burned_in, "
    "i.manufacturer, i.leaf_hash, i.erased_at FROM dataset_images d "
    "JOIN images i ON i.id = d.image_id WHERE d.dataset_id = ? ORDER BY d.position"
)
JOINED_FORMAT = JOINED_QMARK.replace("?", "%s")
DATASET_SIZE_QMARK = "SELECT image_count FROM datasets WHERE id = ?"
DATASET_SIZE_FORMAT = DATASET_SIZE_QMARK.replace("?", "%s")
ORDER_QMARK = "SELECT image_id FROM dataset_images WHERE dataset_id = ? ORDER BY position"
ORDER_FORMAT = ORDER_QMARK.replace("?", "%s")
ALL = f"SELECT {COLUMNS} FROM images"  # noqa: S608 (constant text)
COUNT = "SELECT count(*) FROM images"
STUDY_QMARK = f"{ALL} WHERE study_uid = ?"
STUDY_FORMAT = STUDY_QMARK.replace("?", "%s")
# Below this many images the SQL join is cheap, and counting the index would not be.
IN_MEMORY_JOIN_FROM = 50_000


def _fetch(session: Session, qmark_sql: str, format_sql: str, *params: Any) -> list[Any]:
    conn = session.connection()
    sql = qmark_sql if conn.dialect.paramstyle == "qmark" else format_sql
    cursor = conn.connection.cursor()
    try:
        cursor.execute(sql, params)
        return list(cursor.fetchall())
    finally:
        cursor.close()


def of_dataset(session: Session, dataset_id: str) -> list[tuple[Any, ...]]:
    """Every image of a dataset, in manifest order.

    A large dataset holding most of the index is read as two scans joined in memory: a
    million index lookups (the SQL join) cost several times more than reading both
    tables."""
    size = _fetch(session, DATASET_SIZE_QMARK, DATASET_SIZE_FORMAT, dataset_id)
    if not size:
        return []
    if size[0][0] >= IN_MEMORY_JOIN_FROM:
        (total,) = _fetch(session, COUNT, COUNT)[0]
        if size[0][0] * 2 >= total:
            order = _fetch(session, ORDER_QMARK, ORDER_FORMAT, dataset_id)
            by_id = {row[0]: row for row in _fetch(session, ALL, ALL)}
            return [by_id[image_id] for (image_id,) in order]
    return _fetch(session, JOINED_QMARK, JOINED_FORMAT, dataset_id)


def of_study(session: Session, study_uid: str) -> list[tuple[Any, ...]]:
    """The images of one study that are not erased (authorize)."""
    return [r for r in _fetch(session, STUDY_QMARK, STUDY_FORMAT, study_uid) if r[8] is None]


def of_images(session: Session, image_ids: Sequence[str]) -> list[tuple[Any, ...]]:
    """Rows for a few images (a release batch), in the order given."""
    found: dict[str, tuple[Any, ...]] = {}
    unique = list(dict.fromkeys(image_ids))
    for i in range(0, len(unique), facts.CHUNK):
        for row in session.execute(
            select(
                col(Image.id),
                col(Image.subject_id),
                col(Image.modality),
                col(Image.body_part),
                col(Image.study_date),
                col(Image.burned_in),
                col(Image.manufacturer),
                col(Image.leaf_hash),
                col(Image.erased_at),
            ).where(col(Image.id).in_(unique[i : i + facts.CHUNK]))
        ):
            found[row[0]] = tuple(row)
    return [found[i] for i in image_ids if i in found]
