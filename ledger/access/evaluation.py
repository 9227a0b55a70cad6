"""Evaluating an access request over a dataset (DESIGN §4, steps 2-5).

1. Consent facts for every subject in the dataset, set-based, as of ``as_of``: one
   signature (a small number) per distinct set of consent terms.
2. Per image, the consent outcome: computed once per (signature, image attributes the
   consents look at), not once per image. The images come from the dataset's packed
   columns (``ledger.images.columns``) and are grouped with numpy.
3. Images with the same Cedar context form an equivalence class; Cedar runs once per class.
4. Per image: the class index (compact), counts by reason, the eligible manifest root and
   the composition report of requested versus eligible images.

Release re-checks and authorize decide a few images through
``ledger.access.decision.classes_of_rows``, with the same ``Classifier`` and the same Cedar
call; a test holds the two paths to the same answer for every image.
"""

from __future__ import annotations

import functools
import gc
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ParamSpec, TypeVar

import numpy as np
import numpy.typing as npt
from sqlalchemy import ARRAY, String, case, func, literal, select
from sqlalchemy.orm import Session
from sqlmodel import col

from ledger.access import composition
from ledger.access.classes import ImageClass, Outcomes, pack
from ledger.access.decision import Classifier, decide_classes
from ledger.consent import in_force
from ledger.consent.models import Subject
from ledger.consent.purposes import Purpose
from ledger.db import driver_rows
from ledger.images import columns
from ledger.images.columns import NO_DAY
from ledger.packed import SortedIds, copy_rows
from ledger.policy.engine import PolicySet
from ledger.provenance import merkle_workers

IntArray = npt.NDArray[np.intp]
P = ParamSpec("P")
R = TypeVar("R")


@dataclass
class Result:
    classes: list[ImageClass]
    outcomes: bytes  # per manifest position the class index, packed (``classes.pack``)
    eligible_count: int
    excluded_count: int
    excluded_by_reason: dict[str, int]
    eligible_root: bytes
    consent_snapshot: str
    composition: dict[str, Any]
    timings_ms: dict[str, float] = field(default_factory=dict)

    def per_image(self) -> Outcomes:
        return Outcomes.of(self.classes, self.outcomes)

    def eligible_positions(self) -> npt.NDArray[np.bool_]:
        return self.per_image().eligible()


def _without_gc(fn: Callable[P, R]) -> Callable[P, R]:
    """Run ``fn`` with the cyclic garbage collector paused: the hundreds of thousands of
    consent facts an evaluation makes hold no cycles, and collections that rescan them
    cost seconds."""

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


def _groups(columns: Sequence[npt.NDArray[Any]]) -> tuple[IntArray, IntArray]:
    """Distinct rows of equal-length integer columns: (one row index per distinct row,
    each row's distinct-row number). The columns are packed into one 64-bit key; keys
    from a small range are grouped by counting, others by one sort (and columns whose
    ranges would overflow the key are grouped one at a time first)."""
    keys = np.zeros(len(columns[0]), dtype=np.int64)
    span = 1
    for column in columns:
        low = int(column.min()) if len(column) else 0
        width = (int(column.max()) - low + 1) if len(column) else 1
        if span * width >= 1 << 62:
            _, keys = np.unique(keys, return_inverse=True)
            keys = keys.astype(np.int64).reshape(-1)
            span = int(keys.max()) + 1
        keys = keys * width + (column.astype(np.int64) - low)
        span *= width
    if span <= 4 * len(keys) + 1024:
        present = np.zeros(span, dtype=np.bool_)
        present[keys] = True
        group = (np.cumsum(present) - 1)[keys]
        representative = np.zeros(int(present.sum()), dtype=np.intp)
        representative[group] = np.arange(len(keys))  # any row of a group will do
        return representative, group
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    return first, inverse.reshape(-1)


@_without_gc
def evaluate(
    session: Session,
    policies: PolicySet,
    dataset_id: str,
    purpose: Purpose,
    as_of: datetime,
    *,
    threshold: float,
    vault: columns.Vault | None = None,
) -> Result:
    clock = time.perf_counter()
    timings: dict[str, float] = {}

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round((now - clock) * 1000, 1)
        clock = now

    data = columns.load(session, dataset_id, vault)
    lap("load_images")
    consents = in_force.signatures(session, as_of, data.subjects)
    people = _people(session, data.subjects)
    lap("consent_facts")

    classifier = Classifier(purpose)
    numbers = np.array([classifier.signature(items) for items in consents.facts], dtype=np.int64)
    signature = numbers[consents.of_subject][data.subject]
    needs_date = np.array(classifier.signature_needs_date, dtype=np.bool_)[signature]
    day = np.where(needs_date, data.study_day, NO_DAY)
    modality, part, burned = (data.codes[n] for n in ("modality", "body_part", "burned_in"))
    first, group = _groups([signature, modality, part, burned, day])
    class_of_group = np.array(
        [
            classifier.class_of(
                int(signature[i]),
                data.value("modality", modality[i]),
                data.value("body_part", part[i]),
                data.day(day[i]),
                data.value("burned_in", burned[i]),
            )
            for i in first.tolist()
        ],
        dtype=np.uint32,
    )
    outcomes = class_of_group[group]
    erased = people.erased[data.subject]
    if erased.any():
        outcomes[erased] = classifier.erased()
    lap("classes")

    classes = decide_classes(policies, purpose, classifier.keys)
    lap("policy")

    flags = np.array([c.eligible for c in classes], dtype=np.bool_)
    eligible = flags[outcomes]
    excluded_by_reason: Counter[str] = Counter()
    for index, n in enumerate(np.bincount(outcomes, minlength=len(classes)).tolist()):
        if n and not flags[index]:
            excluded_by_reason[classes[index].reason_key] += n
    eligible_count = int(eligible.sum())
    # Manifest positions are in leaf order, so the eligible leaves are too.
    root = merkle_workers.root(data.leaves[eligible].tobytes())
    lap("manifest")
    report = _composition(data, people, eligible, threshold)
    lap("composition")
    return Result(
        classes=classes,
        outcomes=pack(outcomes),
        eligible_count=eligible_count,
        excluded_count=len(data) - eligible_count,
        excluded_by_reason=dict(excluded_by_reason.most_common()),
        eligible_root=root,
        consent_snapshot=consents.snapshot,
        composition=report,
        timings_ms=timings,
    )


def _composition(
    data: columns.Columns, people: People, eligible: npt.NDArray[np.bool_], threshold: float
) -> dict[str, Any]:
    """Requested versus eligible images by sex, age band, site, modality and manufacturer."""
    study_year = np.where(
        data.study_day == NO_DAY,
        -1,
        data.study_day.astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970,
    )
    per_image: dict[str, tuple[npt.NDArray[Any], Sequence[str | None]]] = {
        "sex": (people.sex[data.subject], people.sexes),
        "age_band": (
            composition.age_band_codes(people.birth_year[data.subject], study_year),
            composition.BANDS,
        ),
        "site": (people.site[data.subject], people.sites),
        "modality": (data.codes["modality"], data.values["modality"]),
        "manufacturer": (data.codes["manufacturer"], data.values["manufacturer"]),
    }
    requested = {name: composition.counts(c, labels) for name, (c, labels) in per_image.items()}
    kept = {
        name: composition.counts(c[eligible], labels) for name, (c, labels) in per_image.items()
    }
    return composition.report(requested, kept, threshold)


@dataclass
class People:
    """Per subject of a dataset (in the columns' subject order): what composition and
    erasure read from the subjects table, which changes after the dataset is frozen."""

    sex: IntArray
    sexes: list[str | None]
    birth_year: IntArray  # -1 when unknown
    site: IntArray
    sites: list[str | None]
    erased: npt.NDArray[np.bool_]


def _people(session: Session, subjects: SortedIds) -> People:
    """By id lists for a few subjects, one scan of the table for many (packed on
    PostgreSQL)."""
    query = select(
        col(Subject.id),
        col(Subject.sex),
        col(Subject.birth_year),
        col(Subject.site),
        col(Subject.erased_at).is_not(None),
    )
    rows: list[Any]
    if len(subjects) > in_force.WHOLE_TABLE_AFTER:
        packed = _packed_people(session, subjects)
        if packed is not None:
            return packed
        rows = driver_rows(session, query)
    else:
        rows = []
        for i in range(0, len(subjects), in_force.CHUNK):
            part = subjects.ids[i : i + in_force.CHUNK]
            rows.extend(driver_rows(session, query.where(col(Subject.id).in_(part))))
    spot = np.array([subjects.number_of.get(r[0], -1) for r in rows], dtype=np.intp)
    sexes: dict[str | None, int] = {None: 0}
    sites: dict[str | None, int] = {None: 0}

    def scatter(values: list[Any], dtype: Any, default: Any) -> npt.NDArray[Any]:
        return _by_subject(len(subjects), spot, np.array(values, dtype=dtype), default)

    return People(
        sex=scatter([sexes.setdefault(r[1], len(sexes)) for r in rows], np.intp, 0),
        sexes=list(sexes),
        birth_year=scatter([-1 if r[2] is None else r[2] for r in rows], np.int64, -1),
        site=scatter([sites.setdefault(r[3], len(sites)) for r in rows], np.intp, 0),
        sites=list(sites),
        erased=scatter([bool(r[4]) for r in rows], np.bool_, False),
    )


def _packed_people(session: Session, subjects: SortedIds) -> People | None:
    """``People`` from packed rows (``ledger.packed``): sex and site come as their
    positions in the distinct values read just before; a value added in between has none,
    and the NULL it gives sends the caller to the row-by-row read."""
    vocabulary = session.execute(select(col(Subject.sex), col(Subject.site)).distinct()).all()
    sexes: list[str | None] = [None, *sorted({r[0] for r in vocabulary if r[0] is not None})]
    sites: list[str | None] = [None, *sorted({r[1] for r in vocabulary if r[1] is not None})]
    labels = ARRAY(String)
    records = copy_rows(
        session,
        select(
            col(Subject.id),
            func.array_position(literal(sexes, labels), col(Subject.sex)),
            func.coalesce(col(Subject.birth_year), -1),
            func.array_position(literal(sites, labels), col(Subject.site)),
            case((col(Subject.erased_at).is_(None), 0), else_=1),
        ),
        ("text", "int", "int", "int", "int"),
    )
    if records is None:
        return None
    spot = subjects.positions(records["f0"])
    count = len(subjects)
    return People(
        sex=_by_subject(count, spot, (records["f1"] - 1).astype(np.intp), 0),
        sexes=sexes,
        birth_year=_by_subject(count, spot, records["f2"].astype(np.int64), -1),
        site=_by_subject(count, spot, (records["f3"] - 1).astype(np.intp), 0),
        sites=sites,
        erased=_by_subject(count, spot, records["f4"] == 1, False),
    )


def _by_subject(
    count: int, spot: IntArray, values: npt.NDArray[Any], default: Any
) -> npt.NDArray[Any]:
    """Per subject of the dataset, the value of the row at its position (``spot``: per
    row, the subject's position, -1 for rows of other subjects); ``default`` where none."""
    mine = spot >= 0
    out = np.full(count, default, dtype=values.dtype)
    out[spot[mine]] = values[mine]
    return out
