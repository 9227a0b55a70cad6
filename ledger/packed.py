"""Rows and ids as numpy arrays, for the decision path's whole-dataset reads.

An evaluation over a million images matches a few hundred thousand consent and subject rows
to a dataset's subjects. Made into Python objects row by row, the reading and matching cost
more than the database's own work. On PostgreSQL, ``copy_rows`` reads a query's rows through
binary COPY straight into one numpy record array when every value of a column has the same
width (ids, hashes, integers: what these reads select), and ``SortedIds`` matches them to a
dataset's subjects with a binary search over packed bytes. Either answers ``None`` or falls
back to text where it cannot, so callers keep one row-by-row path that works everywhere.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy.orm import Session

from ledger import dialect
from ledger.db import bind_processor, driver_cursor

Records = npt.NDArray[np.void]
Keys = npt.NDArray[np.bytes_]

SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
INTEGERS = {2: ">i2", 4: ">i4", 8: ">i8"}


def prefix(keys: Keys) -> npt.NDArray[np.uint64]:
    """Each key's first 8 bytes as an integer whose order is the keys' byte order: sorting
    and searching 8-byte integers is several times faster than comparing 36-byte ids, and
    callers settle the keys whose prefixes collide by full comparison."""
    return keys.astype("S8").view(">u8").astype(np.uint64)


def distinct(keys: Keys) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """(index of one key per distinct value, each key's distinct number), as
    ``np.unique(..., return_index=True, return_inverse=True)`` numbers them."""
    _, first, inverse = np.unique(prefix(keys), return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    if (keys[first][inverse] != keys).any():  # two values share a prefix
        _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)
    return first.astype(np.intp), inverse.astype(np.intp)


def order_by(groups: npt.NDArray[Any], keys: Keys) -> npt.NDArray[np.intp]:
    """Indices ordering rows by ``groups`` (integers), then by ``keys`` (bytes). Most
    groups hold one row, so rows are ordered by group alone and only the rows of groups
    holding several are then ordered by key."""
    order = np.argsort(groups, kind="stable").astype(np.intp)
    tied = groups[order][1:] == groups[order][:-1]
    if tied.any():
        shared = np.flatnonzero(np.r_[tied, False] | np.r_[False, tied])
        rows = order[shared]
        order[shared] = rows[np.lexsort((keys[rows], groups[rows]))]
    return order


class SortedIds:
    """A sorted set of text ids (a dataset's subjects) held as packed UTF-8 bytes, whose
    byte order is the ids' code-point order; the text forms are made only when asked for."""

    def __init__(self, keys: Keys) -> None:
        self.keys = keys

    @classmethod
    def of(cls, ids: Iterable[str]) -> SortedIds:
        ordered = sorted(set(ids))
        return cls(np.array([i.encode() for i in ordered], dtype=np.bytes_))

    def __len__(self) -> int:
        return len(self.keys)

    @cached_property
    def ids(self) -> list[str]:
        return [k.decode() for k in self.keys.tolist()]

    @cached_property
    def number_of(self) -> Mapping[str, int]:
        return {sid: n for n, sid in enumerate(self.ids)}

    @cached_property
    def _heads(self) -> npt.NDArray[np.uint64]:
        return prefix(self.keys)

    def positions(self, candidates: Keys) -> npt.NDArray[np.intp]:
        """Each candidate's position here, -1 where it is not one of these ids."""
        count = len(self.keys)
        spot = np.full(len(candidates), -1, dtype=np.intp)
        if not count or not len(candidates):
            return spot
        heads = prefix(candidates)
        first = np.searchsorted(self._heads, heads).astype(np.intp)  # first id with the prefix
        inside = np.flatnonzero(first < count)
        hit = self.keys[first[inside]] == candidates[inside]
        spot[inside[hit]] = first[inside[hit]]
        # Ids sharing a prefix: the first of them may not be the one asked for.
        shared = inside[~hit][self._heads[first[inside[~hit]]] == heads[inside[~hit]]]
        if len(shared):
            again = np.minimum(np.searchsorted(self.keys, candidates[shared]), count - 1)
            found = self.keys[again] == candidates[shared]
            spot[shared[found]] = again[found]
        return spot


def copy_rows(session: Session, query: Any, kinds: Sequence[str]) -> Records | None:
    """PostgreSQL: the rows of ``query`` as one record array (fields ``f0``, ``f1``, ...;
    ``kinds`` says per column "text" or "int"), when every value of each column has the
    width of the first row's. ``None`` on other backends, for no rows, for a NULL, or when
    widths vary: the caller then reads the rows the usual way.

    The widths check is exact: the first row whose widths differ is read correctly up to
    its first differing field, whose true length is then compared and refused."""
    conn = session.connection()
    if not dialect.is_postgres(conn):
        return None
    compiled = query.compile(dialect=conn.dialect)
    params = {}
    for name, value in compiled.construct_params().items():
        process = bind_processor(compiled.binds[name].type, conn.dialect)
        params[name] = value if process is None or value is None else process(value)
    buffer = bytearray()
    with (
        driver_cursor(session) as cursor,
        cursor.copy(f"COPY ({compiled}) TO STDOUT (FORMAT BINARY)", params) as copy,
    ):
        for block in copy:
            buffer += block
    return parse_binary_copy(bytes(buffer), kinds)


def parse_binary_copy(data: bytes, kinds: Sequence[str]) -> Records | None:
    """Records from PostgreSQL's binary COPY format, when the widths are fixed (see
    ``copy_rows``)."""
    if not data.startswith(SIGNATURE) or not data.endswith(b"\xff\xff"):
        raise ValueError("not PostgreSQL binary COPY output")
    (extension,) = struct.unpack_from(">i", data, len(SIGNATURE) + 4)
    start = len(SIGNATURE) + 8 + extension
    body = memoryview(data)[start:-2]
    if not len(body):
        return None
    (count,) = struct.unpack_from(">h", body, 0)
    if count != len(kinds):
        raise ValueError(f"COPY rows have {count} columns, {len(kinds)} expected")
    fields: list[tuple[str, str]] = [("n", ">i2")]
    widths: list[int] = []
    at = 2
    for number, kind in enumerate(kinds):
        (width,) = struct.unpack_from(">i", body, at)
        if width < 0:
            return None  # a NULL
        if kind == "int":
            if width not in INTEGERS:
                return None
            form = INTEGERS[width]
        elif width == 0:
            return None  # an empty text has no fixed-width form
        else:
            form = f"S{width}"
        fields += [(f"w{number}", ">i4"), (f"f{number}", form)]
        widths.append(width)
        at += 4 + width
    dtype = np.dtype(fields)
    if len(body) % dtype.itemsize:
        return None
    records = np.frombuffer(body, dtype=dtype)
    if (records["n"] != count).any():
        return None
    for number, width in enumerate(widths):
        if (records[f"w{number}"] != width).any():
            return None
    return records
