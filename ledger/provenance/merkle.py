"""RFC 9162 Merkle trees: hashing, roots, inclusion and consistency proofs (pure: hashlib only).

Verification never raises on a wrong proof: it answers ``False``. Structurally impossible
arguments (negative sizes, a hash that is not 32 bytes) raise ``ValueError`` and nothing else,
so an auditor's tool can treat any other exception as a bug.

``MerkleTree`` keeps every level of perfect subtrees, so a proof over a tree of millions of
leaves costs O(log n) hash look-ups instead of recomputing the tree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """SHA-256(0x00 || data)."""
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right)."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def split(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _next_level(level: Sequence[bytes]) -> list[bytes]:
    sha = hashlib.sha256
    prefix = NODE_PREFIX
    return [sha(prefix + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]


def root_hash(leaf_hashes: Sequence[bytes]) -> bytes:
    """RFC 9162 MTH over already-hashed leaves; SHA-256("") for the empty tree.

    Built level by level: pairing left to right and carrying an odd last node up gives the
    same tree as the RFC's split at the largest power of two.
    """
    if not leaf_hashes:
        return EMPTY_ROOT
    level = list(leaf_hashes)
    while len(level) > 1:
        odd = level[-1] if len(level) % 2 else None
        level = _next_level(level)
        if odd is not None:
            level.append(odd)
    return level[0]


def root_of_packed(leaves: bytes) -> bytes:
    """``root_hash`` over leaf hashes laid end to end, 32 bytes each (as a dataset's columns
    keep them): the first level is hashed straight from the buffer, without first making
    an object per leaf."""
    if len(leaves) % HASH_SIZE:
        raise ValueError("packed leaves must be a whole number of 32-byte hashes")
    count = len(leaves) // HASH_SIZE
    if count < 2:
        return leaves if count else EMPTY_ROOT
    sha = hashlib.sha256
    prefix = NODE_PREFIX
    paired = (count // 2) * 2 * HASH_SIZE
    step = 2 * HASH_SIZE
    level = [sha(prefix + leaves[i : i + step]).digest() for i in range(0, paired, step)]
    if count % 2:
        level.append(leaves[paired:])
    return root_hash(level)


class MerkleTree:
    """A tree over leaf hashes with every complete level kept, for fast roots and proofs."""

    def __init__(self, leaf_hashes: Sequence[bytes] = ()) -> None:
        self.levels: list[list[bytes]] = [list(leaf_hashes)]
        self._rebuild_from(0)

    @property
    def size(self) -> int:
        return len(self.levels[0])

    def _rebuild_from(self, start: int) -> None:
        """Recompute the perfect-subtree levels above leaf ``start`` (appends are cheap)."""
        depth = 0
        pos = start
        while len(self.levels[depth]) > 1:
            below = self.levels[depth]
            if depth + 1 == len(self.levels):
                self.levels.append([])
            above = self.levels[depth + 1]
            first = (pos // 2) * 2
            del above[first // 2 :]
            above.extend(_next_level(below[first:]))
            depth += 1
            pos = first // 2
        del self.levels[depth + 1 :]

    def append(self, leaf: bytes) -> None:
        self.levels[0].append(leaf)
        self._rebuild_from(self.size - 1)

    def extend(self, leaves: Sequence[bytes]) -> None:
        start = self.size
        self.levels[0].extend(leaves)
        self._rebuild_from(start)

    def _subtree(self, lo: int, hi: int) -> bytes:
        """MTH of leaves [lo, hi), where lo is aligned as the RFC recursion aligns it."""
        n = hi - lo
        if n & (n - 1) == 0:
            depth = n.bit_length() - 1
            return self.levels[depth][lo >> depth]
        k = split(n)
        return node_hash(self._subtree(lo, lo + k), self._subtree(lo + k, hi))

    def root(self, size: int | None = None) -> bytes:
        size = self.size if size is None else size
        if not 0 <= size <= self.size:
            raise ValueError(f"tree size {size} outside 0..{self.size}")
        return EMPTY_ROOT if size == 0 else self._subtree(0, size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        size = self.size if size is None else size
        if not 0 <= index < size <= self.size:
            raise ValueError(f"no leaf {index} in a tree of size {size}")
        proof: list[bytes] = []
        lo, hi = 0, size
        while hi - lo > 1:
            k = split(hi - lo)
            if index < lo + k:
                proof.append(self._subtree(lo + k, hi))
                hi = lo + k
            else:
                proof.append(self._subtree(lo, lo + k))
                lo += k
        proof.reverse()
        return proof

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        size2 = self.size if size2 is None else size2
        if not 0 < size1 <= size2 <= self.size:
            raise ValueError(f"no consistency proof from size {size1} to {size2}")
        if size1 == size2:
            return []
        proof: list[bytes] = []
        lo, hi, m, complete = 0, size2, size1, True
        while True:
            n = hi - lo
            if m == n:
                if not complete:
                    proof.append(self._subtree(lo, hi))
                break
            k = split(n)
            if m <= k:
                proof.append(self._subtree(lo + k, hi))
                hi = lo + k
            else:
                proof.append(self._subtree(lo, lo + k))
                lo += k
                m -= k
                complete = False
        proof.reverse()
        return proof


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """Audit path for leaf ``index`` in the tree over all of ``leaf_hashes``."""
    return MerkleTree(leaf_hashes).inclusion_proof(index)


def consistency_proof(leaf_hashes: Sequence[bytes], size1: int) -> list[bytes]:
    """Proof that the tree of the first ``size1`` leaves is a prefix of the whole tree."""
    return MerkleTree(leaf_hashes).consistency_proof(size1)


def _check_hashes(*hashes: object) -> None:
    for h in hashes:
        if not isinstance(h, bytes | bytearray) or len(h) != HASH_SIZE:
            raise ValueError("hashes must be 32-byte values")


def _check_proof(proof: object) -> list[bytes]:
    if not isinstance(proof, list | tuple):
        raise ValueError("a proof is a sequence of 32-byte hashes")
    _check_hashes(*proof)
    return [bytes(p) for p in proof]


def verify_inclusion(
    leaf_hash: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 §2.1.3.2."""
    _check_hashes(leaf_hash, root)
    path = _check_proof(proof)
    if not isinstance(index, int) or not isinstance(tree_size, int) or index < 0 or tree_size < 0:
        raise ValueError("index and tree size must be non-negative integers")
    if index >= tree_size:
        return False
    fn, sn, r = index, tree_size - 1, bytes(leaf_hash)
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> bool:
    """RFC 9162 §2.1.4.2. As in the reference Go code, size 0 or a shrinking tree is rejected."""
    _check_hashes(root1, root2)
    path = _check_proof(proof)
    if not isinstance(size1, int) or not isinstance(size2, int) or size1 < 0 or size2 < 0:
        raise ValueError("sizes must be non-negative integers")
    if size1 == 0 or size1 > size2:
        return False
    if size1 == size2:
        return not path and root1 == root2
    if size1 & (size1 - 1) == 0:
        path = [bytes(root1), *path]
    if not path:
        return False
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == root1 and sr == root2 and sn == 0
