"""The columnar evaluation gives, for every image, the answer of the one-row-at-a-time
decision path that release and authorize use, over a population built to vary everything
the answer depends on: modality, body part, study date, burned-in annotation, date- and
modality-scoped consents, amended and withdrawn consents, subjects without consent and an
erased subject."""

from __future__ import annotations

import hashlib
import random
import uuid
from collections import Counter
from datetime import date, timedelta

import numpy as np
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from ledger.access import composition, decision, evaluation, image_rows
from ledger.access.classes import Outcomes
from ledger.clock import utcnow
from ledger.config import Settings
from ledger.consent import csv_import, in_force
from ledger.consent import service as consents
from ledger.consent.models import ConsentVersion, Subject
from ledger.consent.purposes import Purpose
from ledger.consent.schemas import ConsentAmend, WithdrawBody
from ledger.db import bulk_insert, snapshot, transaction
from ledger.dbtypes import table_of
from ledger.images import columns, datasets
from ledger.images import service as images
from ledger.images.models import DatasetImage, Image
from ledger.images.service import image_leaf
from ledger.keystore import load_keyring
from ledger.policy.engine import default_directory, load
from ledger.provenance.merkle import root_hash

HEADER = (
    "issuer,patient_id,decision,purposes,modifiers,modalities,body_parts,study_date_from,"
    "study_date_to,sex,birth_year,site\n"
)
KINDS = [
    "permit,ai,,,,,",
    "permit,ai,NCU,,,,",
    "permit,ai.training,,CT;MR,,,",
    "permit,ai,,,CHEST,2021-01-01,",
    "permit,ai,,,,,2021-12-31",
    "deny,ai.generative,,,,,",
    "deny,ai,,,,,",
    "deny,ai.training,,DX,,,",
    "permit,ai.development;HMB,,,,,",
    "permit,ai.generative,,,,,",
]
MODALITIES = [("CT", "CHEST"), ("MR", "HEAD"), ("DX", "HAND"), ("CT", None), (None, "CHEST")]


def _population(engine: Engine, settings: Settings, patients: int = 90) -> str:
    keys = load_keyring(settings.keys_dir)
    rng = random.Random(7)
    lines = [HEADER]
    for i in range(patients):
        demographics = f"{rng.choice('FM')},{rng.randint(1930, 2010)},site-{i % 3}"
        if i % 17 == 0:
            demographics = ",,"  # unknown sex, age and site
        kind = KINDS[i % len(KINDS)]
        lines.append(f"urn:t,P{i:03d},{kind},{demographics}\n")
        if i % 4 == 0:  # some patients hold two consents
            second = "permit,ai.inference,,,,," if "generative" in kind else KINDS[5]
            lines.append(f"urn:t,P{i:03d},{second},{demographics}\n")
    for i in range(patients, patients + 5):  # consent recorded, images elsewhere
        lines.append(f"urn:t,P{i:03d},{KINDS[0]},F,1970,site-0\n")
    with transaction(engine) as session:
        csv_import.import_rows(
            session, keys.pseudonym_key, csv_import.parse("".join(lines)), actor="t"
        )
        people = list(session.execute(select(Subject.id).order_by(Subject.id)).scalars())  # type: ignore[call-overload]
        rows = []
        for n, sid in enumerate(people[:patients]):
            for k in range(n % 3 + 1):
                sha = hashlib.sha256(f"{n}:{k}".encode()).hexdigest()
                modality, part = MODALITIES[(n + k) % len(MODALITIES)]
                rows.append(
                    {
                        "id": str(uuid.uuid4()),
                        "subject_id": sid,
                        "sha256": sha,
                        "leaf_hash": image_leaf(sha),
                        "modality": modality,
                        "body_part": part,
                        "study_date": (
                            None
                            if (n + k) % 11 == 0
                            else date(2019, 6, 1) + timedelta(days=97 * k + n)
                        ),
                        "burned_in": "YES" if (n, k) == (5, 0) else rng.choice(["NO", None]),
                        "manufacturer": rng.choice(["ACME", "Globex", None]),
                        "size_bytes": 1000,
                        "created_at": utcnow(),
                    }
                )
        bulk_insert(session, table_of(Image), rows)
        dataset = datasets.create(
            session, datasets.DatasetCreate(name="varied", filter={}), actor="t"
        )
        history = list(
            session.execute(select(ConsentVersion).order_by(ConsentVersion.consent_id)).scalars()
        )  # type: ignore[call-overload]
    with transaction(engine) as session:  # later versions: an amendment and a withdrawal
        consents.amend(
            session,
            history[0].consent_id,
            ConsentAmend(decision="deny", purposes=["ai"], reason="patient changed their mind"),
            actor="t",
        )
        consents.withdraw(session, history[1].consent_id, WithdrawBody(), actor="t")
        images.erase_subject(session, people[2], actor="t")
    return dataset.id


def manifest_rows(session: Session, dataset_id: str) -> list[image_rows.ImageRow]:
    """The dataset's images as the one-at-a-time path reads them, in manifest order."""
    order = list(
        session.execute(
            select(DatasetImage.image_id)  # type: ignore[call-overload]
            .where(DatasetImage.dataset_id == dataset_id)
            .order_by(DatasetImage.position)
        ).scalars()
    )
    return image_rows.of_images(session, order)


@pytest.fixture
def varied(engine: Engine, settings: Settings) -> str:
    return _population(engine, settings)


@pytest.fixture(params=["by-ids", "whole-table", "whole-table-unpacked"])
def reads(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """How consents and subjects are read: by id lists (small datasets), or by scanning the
    tables (large ones), packed on PostgreSQL (``ledger.packed``) or row by row when the
    rows cannot be read packed."""
    if request.param != "by-ids":
        monkeypatch.setattr(in_force, "WHOLE_TABLE_AFTER", 0)
    if request.param == "whole-table-unpacked":
        monkeypatch.setattr(in_force, "copy_rows", lambda *args: None)
        monkeypatch.setattr(evaluation, "copy_rows", lambda *args: None)
    return str(request.param)


@pytest.mark.parametrize("purpose", ["ai.training", "ai.generative", "ai.training,HMB"])
def test_every_image_gets_the_answer_of_the_row_path(
    engine: Engine, varied: str, purpose: str, reads: str
) -> None:
    policies = load(default_directory())
    request = Purpose.parse(purpose)
    with snapshot(engine) as session:
        as_of = utcnow()
        result = evaluation.evaluate(session, policies, varied, request, as_of, threshold=0.1)
        rows = manifest_rows(session, varied)
        one_by_one = decision.classes_of_rows(session, policies, request, rows, as_of)
        expected_snapshot = hashlib.sha256(
            "".join(
                sorted(
                    f"{sid}:{f.consent_id}:{f.version};"
                    for sid, items in in_force.effective_consents(
                        session, as_of, [r.subject_id for r in rows]
                    ).items()
                    for f in items
                )
            ).encode()
        ).hexdigest()
    outcomes = result.per_image()
    assert list(outcomes) == one_by_one  # eligibility, policies, reasons and facts alike
    stored = Outcomes.stored([c.as_json() for c in result.classes], result.outcomes)
    assert list(stored) == one_by_one  # what a request stores reads back the same
    reasons = Counter(c.reason_key for c in one_by_one if not c.eligible)
    assert result.excluded_by_reason == dict(reasons)
    assert "image-erased" in reasons  # the population does exercise erasure
    assert 0 < result.eligible_count < len(rows)
    kept = sorted(bytes(r.leaf_hash) for r, c in zip(rows, one_by_one, strict=True) if c.eligible)
    assert result.eligible_root == root_hash(kept)
    assert result.consent_snapshot == expected_snapshot
    with snapshot(engine) as session:
        subjects = list(dict.fromkeys(r.subject_id for r in rows))
        backwards = in_force.signatures(session, as_of, subjects[::-1])
    assert backwards.snapshot == expected_snapshot  # the same whatever order they are asked in


def test_composition_counts_every_image_once(engine: Engine, varied: str, reads: str) -> None:
    policies = load(default_directory())
    request = Purpose.parse("ai.training")
    with snapshot(engine) as session:
        result = evaluation.evaluate(session, policies, varied, request, utcnow(), threshold=0.1)
        data = columns.load(session, varied)
        by_id = {
            sid: (sex, year)
            for sid, sex, year in session.execute(
                select(Subject.id, Subject.sex, Subject.birth_year)  # type: ignore[call-overload]
            )
        }
    eligible = result.eligible_positions()
    sex = Counter(by_id[data.subjects.ids[s]][0] or "unknown" for s in data.subject.tolist())
    attributes = result.composition["attributes"]
    assert {g["value"]: g["requested"] for g in attributes["sex"]["groups"]} == sex
    bands: Counter[str] = Counter()
    for position, s in enumerate(data.subject.tolist()):
        if eligible[position]:
            day = data.day(int(data.study_day[position]))
            birth_year = by_id[data.subjects.ids[s]][1]
            bands[composition.age_band(birth_year, day.year if day else None)] += 1
    assert {
        g["value"]: g["eligible"] for g in attributes["age_band"]["groups"] if g["eligible"]
    } == bands
    assert sum(g["eligible"] for g in attributes["modality"]["groups"]) == result.eligible_count
    assert int(np.count_nonzero(eligible)) == result.eligible_count


@pytest.mark.parametrize(
    "scale",
    [1, 1 << 20, 1 << 40],  # counted, sorted, and grouped column by column first
)
def test_groups_are_the_distinct_rows(scale: int) -> None:
    rng = np.random.default_rng(3)
    columns = [rng.integers(0, 2, 500) * scale, rng.integers(-1, 3, 500) * scale]
    representative, group = evaluation._groups(columns)
    pairs = list(zip(columns[0].tolist(), columns[1].tolist(), strict=True))
    assert len(representative) == len(set(pairs))
    for i, g in enumerate(group.tolist()):
        assert pairs[representative[g]] == pairs[i]
