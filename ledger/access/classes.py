"""Image classes and their verdicts, as typed values (DESIGN §4, steps 3 and 5).

Images whose consent outcome and Cedar-visible attributes are the same share a class
(``ClassKey``), and Cedar decides each class once (``ImageClass``). A request stores its
classes as JSON and, per image in manifest order, the index of its class as a compressed
``uint32`` array; ``Outcomes`` reads that pair back. The array stays an array: a million
images are a million indexes, and an ``ImageClass`` is looked up only for the positions
asked about.

The stored JSON is the contract with existing databases, so ``ImageClass.as_json`` writes
exactly the keys, in the order, that requests have always stored.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

ClassIndex = npt.NDArray[np.uint32]


class ConsentSummary(NamedTuple):
    """What a subject's consents say about one image, as the policies read it."""

    permitted: bool
    denied: bool
    legacy_research: bool  # only a broad research consent without an AI purpose covers it
    explicit_generative: bool  # a permit names ai.generative
    modifiers: tuple[str, ...]  # codes of the covering permits' modifiers (GS, not GS:FR)
    # Valued modifiers (MOR, GS) of the covering permits the request does not meet, by code
    # (``ledger.consent.modifiers.unmet``).
    unmet: tuple[str, ...] = ()


class ClassKey(NamedTuple):
    """Everything Cedar reads about an image: equal keys get equal answers. ``consent``
    is None for the images of an erased subject, which are refused without asking Cedar.

    Keys, their summaries and ``ClassFacts`` are NamedTuples because every decision makes
    and hashes them, cold authorize calls included: a tuple is built and hashed in C, a
    frozen dataclass in Python (measured: a third of the time per key)."""

    consent: ConsentSummary | None
    modality: str = ""
    body_part: str = ""
    burned_in: str = ""

    @property
    def erased(self) -> bool:
        return self.consent is None


ERASED = ClassKey(None)  # the class of every image of an erased subject


class ClassFacts(NamedTuple):
    """What a stored class records about its images, for a person reading it later."""

    modality: str
    body_part: str
    burned_in: str
    consent_permitted: bool
    modifiers: tuple[str, ...]

    @classmethod
    def of(cls, key: ClassKey) -> ClassFacts:
        assert key.consent is not None
        return cls(
            key.modality, key.body_part, key.burned_in, key.consent.permitted, key.consent.modifiers
        )


@dataclass(frozen=True, slots=True)
class ImageClass:
    """Cedar's answer for a class, and so for every image in it."""

    eligible: bool
    policy_ids: tuple[str, ...]
    reasons: tuple[str, ...]
    facts: ClassFacts | None = None  # None for the erased class

    @property
    def reason_key(self) -> str:
        """What exclusions are counted by: the policies that decided, in file order."""
        return ",".join(self.policy_ids)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "eligible": self.eligible,
            "policy_ids": list(self.policy_ids),
            "reasons": list(self.reasons),
            "reason_key": self.reason_key,
        }
        if self.facts is not None:
            out["facts"] = {
                "modality": self.facts.modality,
                "body_part": self.facts.body_part,
                "burned_in": self.facts.burned_in,
                "consent_permitted": self.facts.consent_permitted,
                "modifiers": list(self.facts.modifiers),
            }
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ImageClass:
        facts = data.get("facts")
        return cls(
            bool(data["eligible"]),
            tuple(data["policy_ids"]),
            tuple(data["reasons"]),
            None
            if facts is None
            else ClassFacts(
                facts["modality"],
                facts["body_part"],
                facts["burned_in"],
                bool(facts["consent_permitted"]),
                tuple(facts["modifiers"]),
            ),
        )


ERASED_CLASS = ImageClass(False, ("image-erased",), ("the image's subject was erased",))


def pack(index: npt.NDArray[Any]) -> bytes:
    """The stored form of per-image class indexes: little-endian uint32, zlib level 1."""
    return zlib.compress(index.astype("<u4").tobytes(), 1)


@dataclass(frozen=True)
class Outcomes:
    """Per image of a request's dataset, in manifest order, the class it fell in."""

    classes: Sequence[ImageClass]
    index: ClassIndex  # per manifest position, an index into ``classes``

    @classmethod
    def of(cls, classes: Sequence[ImageClass], packed: bytes) -> Outcomes:
        return cls(classes, np.frombuffer(zlib.decompress(packed), dtype="<u4"))

    @classmethod
    def stored(cls, classes: Sequence[Mapping[str, Any]], packed: bytes) -> Outcomes:
        """From a stored request's ``classes`` (JSON) and ``outcomes`` (packed indexes)."""
        return cls.of([ImageClass.from_json(c) for c in classes], packed)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, position: int) -> ImageClass:
        return self.classes[int(self.index[position])]

    def __iter__(self) -> Iterator[ImageClass]:
        classes = self.classes
        return (classes[i] for i in self.index.tolist())

    def eligible(self) -> npt.NDArray[np.bool_]:
        """Per manifest position, whether the image was eligible."""
        flags = np.array([c.eligible for c in self.classes], dtype=np.bool_)
        return flags[self.index]
