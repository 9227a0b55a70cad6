"""Merkle hashing and proofs against the published RFC 6962 vectors and a recursive reference."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.provenance.merkle import (
    MerkleTree,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_hash,
    verify_consistency,
    verify_inclusion,
)

H = bytes.fromhex
CT_LEAVES = [H(x) for x in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                             "606162636465666768696a6b6c6d6e6f")]  # fmt: skip
CT_ROOTS = [H(x) for x in (
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
)]  # fmt: skip
CT_INCLUSION = [
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
]  # fmt: skip
CT_CONSISTENCY = [
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
    (2, 8, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
]  # fmt: skip
LEAVES = [leaf_hash(d) for d in CT_LEAVES]


def _mth(leaves: list[bytes]) -> bytes:
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node_hash(_mth(leaves[:k]), _mth(leaves[k:]))


def test_published_roots() -> None:
    for size in range(9):
        assert root_hash(LEAVES[:size]) == CT_ROOTS[size]
        assert MerkleTree(LEAVES[:size]).root() == CT_ROOTS[size]


@pytest.mark.parametrize(("index", "size", "proof"), CT_INCLUSION)
def test_published_inclusion_proofs(index: int, size: int, proof: list[str]) -> None:
    expected = [H(p) for p in proof]
    assert inclusion_proof(LEAVES[:size], index) == expected
    assert verify_inclusion(LEAVES[index], index, size, expected, CT_ROOTS[size])


@pytest.mark.parametrize(("size1", "size2", "proof"), CT_CONSISTENCY)
def test_published_consistency_proofs(size1: int, size2: int, proof: list[str]) -> None:
    expected = [H(p) for p in proof]
    assert consistency_proof(LEAVES[:size2], size1) == expected
    assert verify_consistency(size1, size2, expected, CT_ROOTS[size1], CT_ROOTS[size2])


def test_every_proof_in_small_trees_verifies_and_tampering_fails() -> None:
    leaves = [leaf_hash(bytes([i, i * 7 % 256])) for i in range(37)]
    tree = MerkleTree(leaves)
    for n in range(1, len(leaves) + 1):
        root = tree.root(n)
        assert root == _mth(leaves[:n])
        for i in range(n):
            proof = tree.inclusion_proof(i, n)
            assert verify_inclusion(leaves[i], i, n, proof, root)
            if proof:
                bad = [*proof[:-1], bytes(32)]
                assert not verify_inclusion(leaves[i], i, n, bad, root)
        for m in range(1, n + 1):
            proof = tree.consistency_proof(m, n)
            assert verify_consistency(m, n, proof, tree.root(m), root)
            assert not verify_consistency(m, n, proof, tree.root(m), bytes(32))
            if proof:
                assert not verify_consistency(m, n, proof[:-1], tree.root(m), root)


@settings(max_examples=60)
@given(st.lists(st.binary(max_size=4), min_size=1, max_size=70), st.data())
def test_incremental_tree_matches_reference(data: list[bytes], draw: st.DataObject) -> None:
    leaves = [leaf_hash(d) for d in data]
    tree = MerkleTree()
    cut = draw.draw(st.integers(0, len(leaves)))
    for leaf in leaves[:cut]:
        tree.append(leaf)
    tree.extend(leaves[cut:])
    assert tree.root() == _mth(leaves) == root_hash(leaves)
    i = draw.draw(st.integers(0, len(leaves) - 1))
    assert verify_inclusion(leaves[i], i, len(leaves), tree.inclusion_proof(i), tree.root())


def test_rejections_mirror_the_reference_implementation() -> None:
    root = CT_ROOTS[8]
    assert not verify_consistency(0, 8, [], CT_ROOTS[0], root), "from size 0 is rejected"
    assert not verify_consistency(8, 4, [], root, CT_ROOTS[4]), "shrinking is rejected"
    assert verify_consistency(8, 8, [], root, root)
    assert not verify_consistency(8, 8, [root], root, root)
    assert not verify_inclusion(LEAVES[0], 8, 8, [], root)
    with pytest.raises(ValueError, match="32-byte"):
        verify_inclusion(b"short", 0, 1, [], root)
    with pytest.raises(ValueError, match="32-byte"):
        verify_consistency(1, 2, [b"x"], root, root)
    with pytest.raises(ValueError, match="non-negative"):
        verify_inclusion(LEAVES[0], -1, 1, [], root)
    with pytest.raises(ValueError, match="sequence"):
        verify_inclusion(LEAVES[0], 0, 1, "nope", root)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no leaf"):
        MerkleTree(LEAVES).inclusion_proof(8)
    with pytest.raises(ValueError, match="no consistency proof"):
        MerkleTree(LEAVES).consistency_proof(0)
