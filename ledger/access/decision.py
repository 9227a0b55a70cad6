"""Deciding images: what a request asks, the equivalence class of an image, and Cedar's
verdict per class (DESIGN §4, steps 2-4).

An image's class is its consent outcome (computed once per consent signature and the image
attributes the consents look at) with the image attributes Cedar reads. Whole datasets are
classified by ``ledger.access.evaluation``; the few images a release call, a revocation
check or an authorize call touches go through ``classes_of_rows`` here, with the same
``Classifier`` and the same Cedar call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy.orm import Session

from ledger.access import image_rows
from ledger.access.models import AccessRequest
from ledger.consent import facts
from ledger.consent.in_force import effective_consents
from ledger.consent.purposes import Request, tree
from ledger.policy.engine import PolicySet

ERASED: tuple[Any, ...] = ("erased",)  # the class of every image of an erased subject


@dataclass(frozen=True)
class RequestFacts:
    purpose: Request
    commercial: bool
    irb_reference: str | None

    def context(self) -> dict[str, Any]:
        return {
            "ai_purpose": self.purpose.ai or "",
            "duo_category": self.purpose.duo or "",
            "commercial": self.commercial,
            "has_irb_reference": bool(self.irb_reference),
        }


def request_facts(
    purpose: str, duo_category: str | None, commercial: bool, irb_reference: str | None
) -> RequestFacts:
    """Parse what a request asks for; an unknown purpose code is an InvalidInput."""
    text = purpose if duo_category is None else f"{purpose},{duo_category}"
    return RequestFacts(tree().parse_request(text), commercial, irb_reference)


def stored_request_facts(request: AccessRequest) -> RequestFacts:
    return request_facts(
        request.purpose, request.duo_category, request.commercial, request.irb_reference
    )


def _needs_date(items: Sequence[facts.ConsentFact]) -> bool:
    return any(f.scope.date_from or f.scope.date_to for f in items)


class Classifier:
    """Image → equivalence class. Subjects whose consents say the same thing share a
    signature, and each consent outcome is computed once per (signature, image attributes
    the consents look at) rather than once per image."""

    def __init__(self, purpose: Request) -> None:
        self.purpose = purpose
        self.index: dict[tuple[Any, ...], int] = {}
        self.keys: list[tuple[Any, ...]] = []
        self._outcomes: dict[tuple[Any, ...], int] = {}
        self._signature_ids: dict[tuple[int, ...], int] = {}
        self.signature_items: list[Sequence[facts.ConsentFact]] = []
        self.signature_needs_date: list[bool] = []

    def signature(self, items: Sequence[facts.ConsentFact]) -> int:
        """A small number per distinct set of consent terms (one subject's consents)."""
        key = tuple(sorted(f.terms for f in items))
        number = self._signature_ids.get(key)
        if number is None:
            number = self._signature_ids[key] = len(self.signature_items)
            self.signature_items.append(items)
            self.signature_needs_date.append(_needs_date(items))
        return number

    def class_of(
        self, signature: int, modality: Any, part: Any, study_date: Any, burned: Any
    ) -> int:
        if not self.signature_needs_date[signature]:
            study_date = None
        key = (signature, modality, part, study_date, burned)
        index = self._outcomes.get(key)
        if index is None:
            outcome = facts.decide(
                self.signature_items[signature],
                self.purpose,
                facts.ImageFacts(modality, part, _as_date(study_date)),
            )
            summary = (
                outcome.permitted,
                bool(outcome.denies) and not outcome.permitted,
                outcome.legacy_research,
                any("ai.generative" in p.purposes for p in outcome.permits),
                tuple(sorted(outcome.modifiers)),
            )
            index = self._outcomes[key] = self._class_index(
                (summary, modality or "", part or "", burned or "")
            )
        return index

    def erased(self) -> int:
        return self._class_index(ERASED)

    def classify(
        self,
        items: Sequence[facts.ConsentFact],
        modality: Any,
        part: Any,
        study_date: Any,
        burned: Any,
        erased: Any,
    ) -> int:
        """The class of one image row, given its subject's consent facts."""
        if erased:
            return self.erased()
        return self.class_of(self.signature(items), modality, part, study_date, burned)

    def _class_index(self, class_key: tuple[Any, ...]) -> int:
        index = self.index.get(class_key)
        if index is None:
            index = self.index[class_key] = len(self.keys)
            self.keys.append(class_key)
        return index


def classes_of_rows(
    session: Session,
    policies: PolicySet,
    request: RequestFacts,
    rows: Sequence[tuple[Any, ...]],
    as_of: datetime,
    *,
    action: str = "release",
) -> list[dict[str, Any]]:
    """The class (eligible, policy ids, reasons) of each of ``rows`` as of ``as_of``: the
    same decision path as an evaluation, for the few images a release call or an
    authorize call touches. ``rows`` are shaped as ``ledger.access.image_rows`` reads
    them."""
    in_force = effective_consents(session, as_of, list({r[1] for r in rows}))
    classifier = Classifier(request.purpose)
    positions = [
        classifier.classify(in_force.get(r[1], []), r[2], r[3], r[4], r[5], r[8]) for r in rows
    ]
    classes = decide_classes(policies, request, classifier.keys, action)
    return [classes[p] for p in positions]


def recheck(
    session: Session,
    policies: PolicySet,
    request: RequestFacts,
    image_ids: Sequence[str],
    as_of: datetime,
) -> list[dict[str, Any]]:
    """The class of each image (in the order given) under consent and policy at ``as_of``."""
    rows = image_rows.of_images(session, image_ids)
    assert len(rows) == len(image_ids)  # manifests reference images by foreign key
    return classes_of_rows(session, policies, request, rows, as_of)


def _as_date(value: Any) -> date | None:
    if value is None or isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


def decide_classes(
    policies: PolicySet,
    request: RequestFacts,
    class_keys: list[tuple[Any, ...]],
    action: str = "release",
) -> list[dict[str, Any]]:
    batch = []
    for n, key in enumerate(class_keys):
        if key == ERASED:
            continue
        (permitted, denied, legacy, explicit_gen, modifiers), modality, part, burned = key
        batch.append(
            {
                "action": action,
                "resource_type": "ImageClass",
                "resource": f"class-{n}",
                "context": {
                    "consent": {
                        "permitted": permitted,
                        "denied": denied,
                        "legacy_research": legacy,
                        "explicit_generative": explicit_gen,
                        "modifiers": list(modifiers),
                    },
                    "image": {"modality": modality, "body_part": part, "burned_in": burned},
                    "request": request.context(),
                },
            }
        )
    verdicts = iter(policies.evaluate(batch))
    classes: list[dict[str, Any]] = []
    for key in class_keys:
        if key == ERASED:
            classes.append(
                {
                    "eligible": False,
                    "policy_ids": ["image-erased"],
                    "reasons": ["the image's subject was erased"],
                    "reason_key": "image-erased",
                }
            )
            continue
        verdict = next(verdicts)
        classes.append(
            {
                "eligible": verdict.allowed,
                "policy_ids": list(verdict.policy_ids),
                "reasons": list(verdict.reasons),
                "reason_key": ",".join(verdict.policy_ids),
                "facts": {
                    "modality": key[1],
                    "body_part": key[2],
                    "burned_in": key[3],
                    "consent_permitted": key[0][0],
                    "modifiers": list(key[0][4]),
                },
            }
        )
    return classes
