"""The one-image-at-a-time path reads rows in the order it asks for them."""

from __future__ import annotations

from sqlalchemy import Engine, select

from ledger.access import image_rows
from ledger.db import snapshot
from ledger.images.models import DatasetImage, Image


def test_rows_come_in_the_order_asked_and_a_study_finds_its_images(
    engine: Engine, world: dict[str, str]
) -> None:
    with snapshot(engine) as session:
        ids = list(
            session.execute(
                select(DatasetImage.image_id)  # type: ignore[call-overload]
                .where(DatasetImage.dataset_id == world["small"])
                .order_by(DatasetImage.position)
            ).scalars()
        )
        rows = image_rows.of_images(session, [*reversed(ids), ids[0], "no-such-image"])
        image = session.get(Image, ids[0])
        assert image is not None
        assert image.study_uid is not None
        study = image_rows.of_study(session, image.study_uid)
    assert [r.id for r in rows] == [*reversed(ids), ids[0]]  # unknown ids are left out
    assert ids[0] in {r.id for r in study}
    assert all(r.erased_at is None for r in study)
