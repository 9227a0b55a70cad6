"""Typed classes and outcomes keep the stored format of requests evaluated before them."""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

from ledger.access.classes import (
    ERASED,
    ERASED_CLASS,
    ClassFacts,
    ClassKey,
    ConsentSummary,
    ImageClass,
    Outcomes,
    pack,
)
from ledger.access.decision import request_context
from ledger.consent.purposes import Purpose

# Classes exactly as requests store them (JSON), erased class included.
STORED: list[dict[str, Any]] = [
    {
        "eligible": True,
        "policy_ids": ["consent-permits-purpose"],
        "reasons": ["the subject's consent permits the purpose"],
        "reason_key": "consent-permits-purpose",
        "facts": {
            "modality": "CT",
            "body_part": "CHEST",
            "burned_in": "",
            "consent_permitted": True,
            "modifiers": ["NCU"],
        },
    },
    {
        "eligible": False,
        "policy_ids": ["image-erased"],
        "reasons": ["the image's subject was erased"],
        "reason_key": "image-erased",
    },
    {
        "eligible": False,
        "policy_ids": ["consent-denies-purpose", "burned-in-text"],
        "reasons": ["denied by consent c1 v1 (deny ai)", "text may be burned in"],
        "reason_key": "consent-denies-purpose,burned-in-text",
        "facts": {
            "modality": "US",
            "body_part": "",
            "burned_in": "YES",
            "consent_permitted": False,
            "modifiers": [],
        },
    },
]


def test_stored_classes_read_back_to_the_same_json() -> None:
    classes = [ImageClass.from_json(c) for c in STORED]
    assert [c.as_json() for c in classes] == STORED
    assert [list(c.as_json()) for c in classes] == [list(c) for c in STORED]  # key order too
    assert classes[1] == ERASED_CLASS
    assert classes[2].reason_key == "consent-denies-purpose,burned-in-text"


def test_a_class_records_the_facts_of_its_key() -> None:
    consent = ConsentSummary(True, False, False, False, ("NCU",))
    key = ClassKey(consent, "CT", "CHEST", "")
    assert not key.erased
    assert ERASED.erased
    made = ImageClass(
        True,
        ("consent-permits-purpose",),
        ("the subject's consent permits the purpose",),
        ClassFacts.of(key),
    )
    assert made.as_json() == STORED[0]


def test_outcomes_index_the_classes_per_manifest_position() -> None:
    index = np.array([0, 2, 1, 0, 0], dtype=np.uint32)
    packed = pack(index)
    assert packed == zlib.compress(index.astype("<u4").tobytes(), 1)  # the stored bytes
    outcomes = Outcomes.stored(STORED, packed)
    assert len(outcomes) == 5
    assert outcomes[1].policy_ids == ("consent-denies-purpose", "burned-in-text")
    assert [c.eligible for c in outcomes] == [True, False, False, True, True]
    assert outcomes.eligible().tolist() == [True, False, False, True, True]


def test_the_policies_read_the_purpose_and_its_flags() -> None:
    assert request_context(Purpose.parse("ai.training,HMB")) == {
        "ai_purpose": "ai.training",
        "duo_category": "HMB",
        "commercial": False,
        "has_irb_reference": False,
        "organisation_type": "unknown",
        "ai_development": True,
        "names_disease": False,
        "commitments": [],
    }
    flagged = Purpose.parse(
        "ai.inference,DS:c34",
        commercial=True,
        irb_reference="IRB-1",
        organisation_type="not_for_profit",
    )
    assert request_context(flagged) == {
        "ai_purpose": "ai.inference",
        "duo_category": "DS:ICD10CM:C34",
        "commercial": True,
        "has_irb_reference": True,
        "organisation_type": "not_for_profit",
        "ai_development": False,
        "names_disease": True,
        "commitments": [],
    }
