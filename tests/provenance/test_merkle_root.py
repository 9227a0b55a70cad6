"""The level-by-level root equals the RFC 9162 recursive definition."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from ledger.provenance.merkle import leaf_hash, node_hash, root_hash


def _mth(leaves: list[bytes]) -> bytes:
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node_hash(_mth(leaves[:k]), _mth(leaves[k:]))


@given(st.lists(st.binary(max_size=8), max_size=40))
def test_root_matches_recursive_definition(data: list[bytes]) -> None:
    leaves = [leaf_hash(d) for d in data]
    assert root_hash(leaves) == _mth(leaves)
