"""The one-pass verifier: compact range equals the RFC 9162 root, and entry parsing."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ledger.canonical import canonical
from ledger.provenance.merkle import leaf_hash, root_hash
from ledger.provenance.verify import CompactRange, entry_seq


@given(st.integers(min_value=0, max_value=300))
def test_compact_range_root_matches_root_hash(n: int) -> None:
    leaves = [leaf_hash(str(i).encode()) for i in range(n)]
    compact = CompactRange()
    for i, leaf in enumerate(leaves):
        compact.append(leaf)
        if i % 37 == 0:
            assert compact.root() == root_hash(leaves[: i + 1])
    assert compact.root() == root_hash(leaves)


def test_entry_seq_ignores_seq_keys_nested_in_data() -> None:
    entry = canonical(
        {"v": 1, "seq": 7, "time": "t", "type": "x", "actor": None, "data": {"seq": 99, "a": 1}}
    )
    assert entry_seq(entry) == 7
    assert entry_seq(b'{"no":"seq"}') is None
