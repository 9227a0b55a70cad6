"""A dataset's packed columns say what the image index says, position by position; a
dataset from before the columns existed gets them on first use; erasure reaches them."""

from __future__ import annotations

import io

import numpy as np
import pytest
from sqlalchemy import Engine, delete

from ledger.db import snapshot, transaction
from ledger.images import columns
from ledger.images.models import DatasetColumns
from ledger.provenance.merkle import root_hash, root_of_packed
from tests.access.test_evaluation import manifest_rows, varied  # noqa: F401


def _index_rows(engine: Engine, dataset_id: str) -> list[tuple[object, ...]]:
    with snapshot(engine) as session:
        return [tuple(r) for r in manifest_rows(session, dataset_id)]


def test_columns_match_the_index_and_erasure_blanks_dates(engine: Engine, varied: str) -> None:  # noqa: F811
    rows = _index_rows(engine, varied)
    with snapshot(engine) as session:
        data = columns.load(session, varied)
    assert len(data) == len(rows)
    assert data.subjects.ids == sorted(data.subjects.ids)
    erased = 0
    for position, row in enumerate(rows):
        _, sid, modality, part, study_date, burned, manufacturer, leaf, erased_at = row
        assert data.subjects.ids[int(data.subject[position])] == sid
        assert data.value("modality", int(data.codes["modality"][position])) == (modality or None)
        assert data.value("body_part", int(data.codes["body_part"][position])) == (part or None)
        assert data.value("burned_in", int(data.codes["burned_in"][position])) == (burned or None)
        assert bytes(data.leaves[position]) == bytes(leaf)  # type: ignore[arg-type]
        day = data.day(int(data.study_day[position]))
        maker = data.value("manufacturer", int(data.codes["manufacturer"][position]))
        if erased_at is not None:  # stripped in the index, so stripped here
            erased += 1
            assert (day, maker) == (None, None)
        assert (day.isoformat() if day else None) == (str(study_date)[:10] if study_date else None)
        assert maker == (manufacturer or None)
    assert erased > 0
    leaves = [bytes(r[7]) for r in rows]  # type: ignore[arg-type]
    assert root_of_packed(data.leaves.tobytes()) == root_hash(leaves)


def test_a_dataset_without_columns_gets_them_on_first_use(engine: Engine, varied: str) -> None:  # noqa: F811
    with snapshot(engine) as session:
        before = columns.load(session, varied)
    with transaction(engine) as session:
        session.execute(delete(DatasetColumns).where(DatasetColumns.dataset_id == varied))  # type: ignore[arg-type]
    with transaction(engine) as session:
        rebuilt = columns.load(session, varied)
    with snapshot(engine) as session:
        assert session.get(DatasetColumns, varied) is not None  # kept for the next time
    assert rebuilt.subjects.ids == before.subjects.ids
    assert np.array_equal(rebuilt.subject, before.subject)
    assert np.array_equal(rebuilt.study_day, before.study_day)
    assert np.array_equal(rebuilt.leaves, before.leaves)
    for name in columns.TEXT:
        decoded = [rebuilt.value(name, c) for c in rebuilt.codes[name].tolist()]
        assert decoded == [before.value(name, c) for c in before.codes[name].tolist()]


def test_columns_of_an_unknown_format_are_refused(engine: Engine, varied: str) -> None:  # noqa: F811
    with snapshot(engine) as session:
        blob = bytes(session.get(DatasetColumns, varied).arrays)  # type: ignore[union-attr]
    data = dict(np.load(io.BytesIO(blob), allow_pickle=False))
    data["format"] = np.array([99])
    out = io.BytesIO()
    np.savez(out, **data)
    with pytest.raises(ValueError, match="unknown format 99"):
        columns._unpack(out.getvalue())


@pytest.mark.parametrize("count", [0, 1, 2, 3, 5, 8, 13, 33])
def test_packed_root_is_the_root_of_the_same_leaves(count: int) -> None:
    leaves = [bytes([n]) * 32 for n in range(count)]
    assert root_of_packed(b"".join(leaves)) == root_hash(leaves)


def test_packed_leaves_must_be_whole_hashes() -> None:
    with pytest.raises(ValueError, match="32-byte"):
        root_of_packed(b"\0" * 33)
