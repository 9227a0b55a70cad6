"""Evaluating an access request over a dataset (DESIGN §4, steps 2-5).

1. Consent facts for every subject in the dataset, set-based, as of ``as_of``.
2. Per image, the consent outcome: computed once per (consent text signature, image
   attributes the consents look at), not once per image.
3. Images with the same Cedar context form an equivalence class; Cedar runs once per class.
4. Per image: the class index (compact), counts by reason, the eligible manifest root and
   the composition report of requested versus eligible images.
"""

from __future__ import annotations

import functools
import gc
import hashlib
import time
import zlib
from array import array
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from ledger.access import composition, image_rows
from ledger.access.models import AccessRequest
from ledger.consent import facts
from ledger.consent.models import Subject
from ledger.consent.purposes import Request, tree
from ledger.policy.engine import PolicySet
from ledger.provenance.merkle import root_hash

ERASED: tuple[Any, ...] = ("erased",)  # the class of every image of an erased subject
P = ParamSpec("P")
R = TypeVar("R")


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


@dataclass
class Result:
    classes: list[dict[str, Any]]
    outcomes: bytes  # zlib of uint32 class index per manifest position
    image_ids: list[str]
    eligible_count: int
    excluded_count: int
    excluded_by_reason: dict[str, int]
    eligible_root: bytes
    consent_snapshot: str
    composition: dict[str, Any]
    timings_ms: dict[str, float] = field(default_factory=dict)


def decode_outcomes(blob: bytes) -> array[int]:
    return array("I", zlib.decompress(blob))


def _signature(items: Sequence[facts.ConsentFact]) -> tuple[Any, ...]:
    return tuple(sorted((f.decision, f.purposes, f.modifiers, f.scope) for f in items))


def _needs_date(items: Sequence[facts.ConsentFact]) -> bool:
    return any(f.scope.date_from or f.scope.date_to for f in items)


class Classifier:
    """Image → equivalence class, computing each consent outcome once per (consent text
    signature, image attributes the consents look at) rather than once per image."""

    def __init__(self, in_force: dict[str, list[facts.ConsentFact]], purpose: Request) -> None:
        self.in_force = in_force
        self.purpose = purpose
        self.index: dict[tuple[Any, ...], int] = {}
        self.keys: list[tuple[Any, ...]] = []
        self._outcomes: dict[tuple[Any, ...], int] = {}
        # Signatures are deep tuples (scopes, purposes): hashing one per image would cost
        # more than everything else, so each subject maps once to a small int.
        self._signature_ids: dict[tuple[Any, ...], int] = {}
        self._subjects: dict[str, tuple[int, bool]] = {}

    def _subject(self, sid: str) -> tuple[int, bool]:
        items = self.in_force.get(sid, [])
        signature = _signature(items)
        number = self._signature_ids.setdefault(signature, len(self._signature_ids))
        found = self._subjects[sid] = (number, _needs_date(items))
        return found

    def _summary(self, sid: str, modality: Any, part: Any, study_date: Any) -> tuple[Any, ...]:
        outcome = facts.decide(
            self.in_force.get(sid, []),
            self.purpose,
            facts.ImageFacts(modality, part, _as_date(study_date)),
        )
        return (
            outcome.permitted,
            bool(outcome.denies) and not outcome.permitted,
            outcome.legacy_research,
            any("ai.generative" in p.purposes for p in outcome.permits),
            tuple(sorted(outcome.modifiers)),
        )

    def classify(
        self, sid: str, modality: Any, part: Any, study_date: Any, burned: Any, erased: Any
    ) -> int:
        if erased:
            key: tuple[Any, ...] = ERASED
        else:
            subject = self._subjects.get(sid) or self._subject(sid)
            key = (subject[0], modality, part, study_date if subject[1] else None, burned)
        index = self._outcomes.get(key)
        if index is None:
            class_key = (
                ERASED
                if erased
                else (
                    self._summary(sid, modality, part, study_date),
                    modality or "",
                    part or "",
                    burned or "",
                )
            )
            index = self._outcomes[key] = self._class_index(class_key)
        return index

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
    in_force = facts.effective_consents(session, as_of, list({r[1] for r in rows}))
    classifier = Classifier(in_force, request.purpose)
    positions = [classifier.classify(r[1], r[2], r[3], r[4], r[5], r[8]) for r in rows]
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


def _without_gc(fn: Callable[P, R]) -> Callable[P, R]:
    """Run ``fn`` with the cyclic garbage collector paused: the millions of row tuples an
    evaluation makes hold no cycles, and collections that rescan them cost seconds."""

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        enabled = gc.isenabled()
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            if enabled:
                gc.enable()

    return run


@_without_gc
def evaluate(
    session: Session,
    policies: PolicySet,
    dataset_id: str,
    request: RequestFacts,
    as_of: datetime,
    *,
    threshold: float,
) -> Result:
    clock = time.perf_counter()
    timings: dict[str, float] = {}

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round((now - clock) * 1000, 1)
        clock = now

    rows = image_rows.of_dataset(session, dataset_id)
    subject_ids = list(dict.fromkeys(row[1] for row in rows))
    lap("load_images")
    # Chunks of known ids: both databases plan these well, unlike IN over a join.
    in_force = facts.effective_consents(session, as_of, subject_ids)
    people = _demographics(session, subject_ids)
    lap("consent_facts")

    snapshot = hashlib.sha256()
    for sid in sorted(in_force):
        for f in sorted(in_force[sid], key=lambda f: f.consent_id):
            snapshot.update(f"{sid}:{f.consent_id}:{f.version};".encode())

    classifier = Classifier(in_force, request.purpose)
    outcomes = array("I")
    # (class, demographic profile) → images: requested and eligible composition both come
    # from it, without keeping a profile per image.
    combos: dict[tuple[int, tuple[Any, ...]], int] = {}
    bands: dict[tuple[Any, Any], str] = {}
    classify = classifier.classify
    unknown_person = (None, None, None)
    for _image_id, sid, modality, part, study_date, burned, manufacturer, _, erased in rows:
        index = classify(sid, modality, part, study_date, burned, erased)
        outcomes.append(index)
        sex, year, site = people.get(sid, unknown_person)
        band = bands.get((year, study_date))
        if band is None:
            study_year = str(study_date)[:4] if study_date else ""
            band = bands[(year, study_date)] = composition.age_band(
                year, int(study_year) if study_year.isdigit() else None
            )
        combo = (index, (sex, band, site, modality, manufacturer))
        combos[combo] = combos.get(combo, 0) + 1
    lap("classes")

    classes = decide_classes(policies, request, classifier.keys)
    lap("policy")

    eligible_flags = [c["eligible"] for c in classes]
    counts = Counter(outcomes)
    excluded_by_reason: Counter[str] = Counter()
    for index, n in counts.items():
        if not eligible_flags[index]:
            excluded_by_reason[classes[index]["reason_key"]] += n
    requested: Counter[tuple[Any, ...]] = Counter()
    eligible: Counter[tuple[Any, ...]] = Counter()
    for (index, profile), n in combos.items():
        requested[profile] += n
        if eligible_flags[index]:
            eligible[profile] += n
    leaves = [
        bytes(row[7]) for row, index in zip(rows, outcomes, strict=True) if eligible_flags[index]
    ]
    leaves.sort()
    eligible_count = len(leaves)
    root = root_hash(leaves)
    lap("manifest")
    report = composition.report(_profiles(requested), _profiles(eligible), threshold)
    lap("composition")
    return Result(
        classes=classes,
        outcomes=zlib.compress(outcomes.tobytes(), 6),
        image_ids=[r[0] for r in rows],
        eligible_count=eligible_count,
        excluded_count=len(rows) - eligible_count,
        excluded_by_reason=dict(excluded_by_reason.most_common()),
        eligible_root=root,
        consent_snapshot=snapshot.hexdigest(),
        composition=report,
        timings_ms=timings,
    )


def _profiles(counts: Counter[tuple[Any, ...]]) -> dict[composition.Profile, int]:
    unknown = composition.UNKNOWN
    out: Counter[composition.Profile] = Counter()
    for (sex, band, site, modality, manufacturer), n in counts.items():
        profile = composition.Profile(
            sex or unknown, band, site or unknown, modality or unknown, manufacturer or unknown
        )
        out[profile] += n
    return out


def _as_date(value: Any) -> date | None:
    if value is None or isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


def _demographics(session: Session, subject_ids: list[str]) -> dict[str, tuple[Any, Any, Any]]:
    """(sex, birth year, site) per subject: by id lists for a few, one scan for many."""
    query = select(col(Subject.id), col(Subject.sex), col(Subject.birth_year), col(Subject.site))
    if len(subject_ids) > facts.WHOLE_TABLE_AFTER:
        return {sid: (sex, year, site) for sid, sex, year, site in session.execute(query)}
    people: dict[str, tuple[Any, Any, Any]] = {}
    for i in range(0, len(subject_ids), facts.CHUNK):
        part = subject_ids[i : i + facts.CHUNK]
        people.update(
            (sid, (sex, year, site))
            for sid, sex, year, site in session.execute(query.where(col(Subject.id).in_(part)))
        )
    return people


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
