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
from datetime import date, datetime
from typing import Any, cast

from sqlalchemy.orm import Session, object_session

from ledger.access import conditions, image_rows
from ledger.access.classes import (
    ERASED,
    ERASED_CLASS,
    ClassFacts,
    ClassKey,
    ConsentSummary,
    ImageClass,
)
from ledger.access.models import AccessRequest
from ledger.consent import facts
from ledger.consent import modifiers as consent_modifiers
from ledger.consent.in_force import effective_consents
from ledger.consent.purposes import Purpose, tree
from ledger.policy.engine import PolicySet, Verdict
from ledger.principals import service as principals


def request_context(purpose: Purpose) -> dict[str, Any]:
    """What the policies read about the request (``request`` in every Cedar context)."""
    return {
        "ai_purpose": purpose.ai or "",
        "duo_category": purpose.category_text,
        "commercial": purpose.commercial,
        "has_irb_reference": bool(purpose.irb_reference),
        "organisation_type": purpose.organisation_type,
        "ai_development": purpose.development,
        "names_disease": bool(purpose.diseases),
        "commitments": sorted(purpose.commitments),
    }


def _nmds_unmet(permits: Sequence[facts.ConsentFact], purpose: Purpose) -> tuple[str, ...]:
    """``("NMDS",)`` when model development is asked of a covering permit that carries NMDS
    and names no DUO category: DUO allows methods research on such data only "within the
    bounds of other use limitations", and a consent naming none gives no bounds (the DUOS
    matchers approve it under GRU, HMB, POA or a matching disease, and deny it on a dataset
    with no category: ``DataUseMatcherTest.testNMDS_negative_case_1``). A request naming
    no disease is refused by the policy itself, whatever the consent names."""
    if not purpose.development:
        return ()
    for permit in permits:
        if "NMDS" in permit.modifiers and all(tree().branch(p) == "ai" for p in permit.purposes):
            return ("NMDS",)
    return ()


def purpose_of(request: AccessRequest) -> Purpose:
    """What a stored request asked for, with its flags and commitments, and the
    requester's organisation type and region as they are now (NPU and GS consents are
    weighed again at every release)."""
    session = object_session(request)
    who = principals.requester_facts(session, request.requester_id) if session else None
    return conditions.with_conditions(
        Purpose.of_fields(
            request.purpose,
            request.duo_category,
            commercial=request.commercial,
            irb_reference=request.irb_reference,
            organisation_type=who.organisation_type if who else "unknown",
        ),
        request.conditions or {},
        region=who.region if who else None,
        requester=request.requester_id,
        institution=who.institution if who else None,
    )


def _needs_date(items: Sequence[facts.ConsentFact]) -> bool:
    return any(f.scope.date_from or f.scope.date_to for f in items)


class Classifier:
    """Image → equivalence class. Subjects whose consents say the same thing share a
    signature, and each consent outcome is computed once per (signature, image attributes
    the consents look at) rather than once per image."""

    def __init__(self, purpose: Purpose) -> None:
        self.purpose = purpose
        self.index: dict[ClassKey, int] = {}
        self.keys: list[ClassKey] = []
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
            summary = ConsentSummary(
                permitted=outcome.permitted,
                denied=bool(outcome.denies) and not outcome.permitted,
                legacy_research=outcome.legacy_research,
                explicit_generative=any("ai.generative" in p.purposes for p in outcome.permits),
                modifiers=tuple(sorted({consent_modifiers.base(m) for m in outcome.modifiers})),
                unmet=tuple(
                    sorted(
                        consent_modifiers.unmet(
                            outcome.modifiers,
                            no_publication_before=self.purpose.no_publication_before,
                            region=self.purpose.region,
                            requester=self.purpose.requester,
                            institution=self.purpose.institution,
                            project=self.purpose.project,
                        )
                        + _nmds_unmet(outcome.permits, self.purpose)
                    )
                ),
            )
            index = self._outcomes[key] = self._class_index(
                ClassKey(summary, modality or "", part or "", burned or "")
            )
        return index

    def erased(self) -> int:
        return self._class_index(ERASED)

    def classify(self, items: Sequence[facts.ConsentFact], row: image_rows.ImageRow) -> int:
        """The class of one image row, given its subject's consent facts."""
        if row.erased_at is not None:
            return self.erased()
        return self.class_of(
            self.signature(items), row.modality, row.body_part, row.study_date, row.burned_in
        )

    def _class_index(self, class_key: ClassKey) -> int:
        index = self.index.get(class_key)
        if index is None:
            index = self.index[class_key] = len(self.keys)
            self.keys.append(class_key)
        return index


def classes_of_rows(
    session: Session,
    policies: PolicySet,
    purpose: Purpose,
    rows: Sequence[image_rows.ImageRow],
    as_of: datetime,
    *,
    action: str = "release",
) -> list[ImageClass]:
    """The class of each of ``rows`` as of ``as_of``: the same decision path as an
    evaluation, for the few images a release call or an authorize call touches."""
    in_force = effective_consents(session, as_of, list({r.subject_id for r in rows}))
    classifier = Classifier(purpose)
    positions = [classifier.classify(in_force.get(r.subject_id, []), r) for r in rows]
    classes = _verdicts.decide(policies, purpose, classifier.keys, action)
    return [classes[p] for p in positions]


class Verdicts:
    """Cedar's answers kept by policy set, purpose, action and class: the answer is a
    function of those alone (``decide_classes``), and a pipeline's release calls re-check
    the same few classes study after study. A new policy set (its hash) or another
    purpose (the requester's facts are part of it) is asked anew. Bounded in size."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._answers: dict[tuple[str, Purpose, str, ClassKey], ImageClass] = {}

    def decide(
        self, policies: PolicySet, purpose: Purpose, class_keys: Sequence[ClassKey], action: str
    ) -> list[ImageClass]:
        asked = [(policies.hash, purpose, action, key) for key in class_keys]
        found = {a: self._answers.get(a) for a in asked}
        new = [a for a, answer in found.items() if answer is None]
        if new:
            answers = decide_classes(policies, purpose, [a[3] for a in new], action)
            if len(self._answers) + len(new) > self.size:
                self._answers.clear()
            for a, answer in zip(new, answers, strict=True):
                found[a] = self._answers[a] = answer
        return [cast(ImageClass, found[a]) for a in asked]


_verdicts = Verdicts()


def recheck(
    session: Session,
    policies: PolicySet,
    purpose: Purpose,
    image_ids: Sequence[str],
    as_of: datetime,
) -> list[ImageClass]:
    """The class of each image (in the order given) under consent and policy at ``as_of``."""
    rows = image_rows.of_images(session, image_ids)
    assert len(rows) == len(image_ids)  # manifests reference images by foreign key
    return classes_of_rows(session, policies, purpose, rows, as_of)


def _as_date(value: Any) -> date | None:
    if value is None or isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


def class_context(key: ClassKey, request: dict[str, Any]) -> dict[str, Any]:
    """The Cedar context of one class: its consent summary, image attributes and the
    request (``request_context``). The key must not be the erased class."""
    consent = key.consent
    assert consent is not None
    return {
        "consent": {
            "permitted": consent.permitted,
            "denied": consent.denied,
            "legacy_research": consent.legacy_research,
            "explicit_generative": consent.explicit_generative,
            "modifiers": list(consent.modifiers),
            "unmet": list(consent.unmet),
        },
        "image": {
            "modality": key.modality,
            "body_part": key.body_part,
            "burned_in": key.burned_in,
        },
        "request": request,
    }


def decide_classes(
    policies: PolicySet,
    purpose: Purpose,
    class_keys: Sequence[ClassKey],
    action: str = "release",
) -> list[ImageClass]:
    """Cedar's answer per class, in the order of ``class_keys`` (one batch call); the
    erased class is refused without asking."""
    request = request_context(purpose)
    batch = [
        {
            "action": action,
            "resource_type": "ImageClass",
            "resource": f"class-{n}",
            "context": class_context(key, request),
        }
        for n, key in enumerate(class_keys)
        if key.consent is not None
    ]
    verdicts = iter(policies.evaluate(batch))
    return [
        ERASED_CLASS if key.consent is None else _answer(next(verdicts), key) for key in class_keys
    ]


def _answer(verdict: Verdict, key: ClassKey) -> ImageClass:
    return ImageClass(verdict.allowed, verdict.policy_ids, verdict.reasons, ClassFacts.of(key))
