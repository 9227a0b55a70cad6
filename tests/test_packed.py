"""Packed rows and ids: the binary COPY reader refuses what it cannot read exactly, and the
prefix-accelerated searches give numpy's exact answers, also where ids share prefixes."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from sqlalchemy import Engine, literal, select, text

from ledger.db import driver_rows, snapshot
from ledger.packed import SortedIds, copy_rows, distinct, order_by, parse_binary_copy

HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
TRAILER = b"\xff\xff"


def _row(*fields: bytes | int | None) -> bytes:
    out = struct.pack(">h", len(fields))
    for value in fields:
        if value is None:
            out += struct.pack(">i", -1)
        elif isinstance(value, int):
            out += struct.pack(">ii", 4, value)
        else:
            out += struct.pack(">i", len(value)) + value
    return out


def test_fixed_width_rows_are_read_as_records() -> None:
    data = HEADER + _row(b"abc", 1) + _row(b"xyz", -7) + TRAILER
    records = parse_binary_copy(data, ("text", "int"))
    assert records is not None
    assert records["f0"].tolist() == [b"abc", b"xyz"]
    assert records["f1"].tolist() == [1, -7]


@pytest.mark.parametrize(
    "rows",
    [
        [_row(b"abc", 1), _row(b"ab", 2), _row(b"abcd", 3)],  # widths vary, lengths add up
        [_row(b"abc", 1), _row(None, 2)],
        [_row(b"", 1)],
        [],
    ],
    ids=["varying", "null", "empty-text", "no-rows"],
)
def test_rows_that_cannot_be_read_packed_give_none(rows: list[bytes]) -> None:
    assert parse_binary_copy(HEADER + b"".join(rows) + TRAILER, ("text", "int")) is None


def test_not_copy_output_or_another_shape_is_an_error() -> None:
    with pytest.raises(ValueError, match="binary COPY"):
        parse_binary_copy(b"id,version\n", ("text", "int"))
    with pytest.raises(ValueError, match="3 columns"):
        parse_binary_copy(HEADER + _row(b"a", 1, 2) + TRAILER, ("text", "int"))


def test_copy_rows_reads_what_the_driver_reads(engine: Engine, backend: str) -> None:
    if backend == "sqlite":
        with snapshot(engine) as session:
            assert copy_rows(session, select(literal(1)), ("int",)) is None  # PostgreSQL's
        return
    query = text(
        "SELECT 'id-' || lpad(n::text, 4, '0'), n * 3 - 50 FROM generate_series(0, 999) AS n "
        "WHERE n < :limit ORDER BY n"
    ).bindparams(limit=500)
    uneven = text("SELECT repeat('x', n) FROM generate_series(1, 3) AS n")
    with snapshot(engine) as session:
        records = copy_rows(session, query, ("text", "int"))
        rows = driver_rows(session, query)
        assert copy_rows(session, uneven, ("text",)) is None
    assert len(rows) == 500
    assert records is not None
    assert [(i.decode(), int(n)) for i, n in zip(records["f0"], records["f1"], strict=True)] == [
        tuple(r) for r in rows
    ]


def _ids(n: int, seed: int) -> list[str]:
    """Ids whose first 8 bytes are shared by many (as ``subject-0001`` ... are)."""
    rng = np.random.default_rng(seed)
    return [f"subject-{int(k):05d}" for k in rng.choice(10 * n, n, replace=False)]


def test_positions_are_exact_where_ids_share_prefixes() -> None:
    known = SortedIds.of([*_ids(300, 1), "a", "zzzzzzzzzz"])
    asked = [*_ids(400, 2), "a", "zzzzzzzzzz", "zzzzzzzzzzz", ""]
    candidates = np.array([a.encode() for a in asked], dtype=np.bytes_)
    expected = [known.number_of.get(a, -1) for a in asked]
    assert known.positions(candidates).tolist() == expected
    assert known.ids == sorted(known.ids)
    assert SortedIds.of([]).positions(candidates).tolist() == [-1] * len(asked)


def test_distinct_and_order_by_match_numpy_where_prefixes_collide() -> None:
    keys = np.array([i.encode() for i in _ids(200, 3) * 2], dtype=np.bytes_)
    first, inverse = distinct(keys)
    assert (keys[first][inverse] == keys).all()
    assert len(first) == len(np.unique(keys))
    rng = np.random.default_rng(4)
    for groups in (np.arange(len(keys)) % 7, rng.permutation(len(keys)) // 3):
        order = order_by(groups, keys)  # few large groups; many groups of one to three
        assert order.tolist() == np.lexsort((keys, groups)).tolist()
