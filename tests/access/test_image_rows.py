"""Both ways of reading a dataset's rows give the same rows in the same order."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from ledger.access import image_rows
from ledger.db import snapshot


def test_in_memory_join_matches_the_sql_join(
    engine: Engine, world: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with snapshot(engine) as session:
        joined = image_rows.of_dataset(session, world["all"])  # small: the SQL join
        monkeypatch.setattr(image_rows, "IN_MEMORY_JOIN_FROM", 0)
        in_memory = image_rows.of_dataset(session, world["all"])  # most of the index
        small = image_rows.of_dataset(session, world["small"])  # a few: the SQL join again
        assert image_rows.of_dataset(session, "no-such-dataset") == []
    assert len(joined) == 40
    assert [tuple(r) for r in in_memory] == [tuple(r) for r in joined]
    assert len(small) == 5
    assert {r[0] for r in small} <= {r[0] for r in joined}
    leaves = [bytes(r[7]) for r in small]
    assert leaves == sorted(leaves)  # manifest order is leaf order
