"""Authorize's one-statement study read chooses the consent versions in force exactly as
``in_force.effective_consents`` does, over histories built to differ in everything the
choice depends on (superseded, withdrawn, not yet valid, expired, amended after the
instant, TS-limited by date and by months, a deny carrying TS, an erased study), at
several instants; and ``Authorizer.decide`` answers as the release path's classes do."""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select

from ledger.access import decision, image_rows, study_read
from ledger.access.asker import NOBODY
from ledger.access.authorize import Authorizer, _verdict
from ledger.clock import utcnow
from ledger.config import Settings
from ledger.consent import service as consents
from ledger.consent.in_force import effective_consents
from ledger.consent.models import ConsentVersion, Subject
from ledger.consent.schemas import WithdrawBody
from ledger.consent.terms import terms_key
from ledger.db import bulk_insert, session_factory, snapshot, transaction
from ledger.dbtypes import table_of
from ledger.errors import NotFound
from ledger.images.models import Image
from ledger.images.service import image_leaf
from ledger.keystore import load_keyring
from ledger.policy.engine import default_directory, load

NOW = utcnow().replace(microsecond=0)
DAY = timedelta(days=1)
PERMIT = ("permit", ["ai"], [])
DENY = ("deny", ["ai"], [])

# Per subject: its consents, each a list of versions
# (terms, status, valid_from, valid_until, recorded_at), in version order.
Version = tuple[tuple[str, list[str], list[str]], str, datetime, datetime | None, datetime]
HISTORIES: dict[str, list[list[Version]]] = {
    "plain": [[(PERMIT, "active", NOW - 30 * DAY, None, NOW - 30 * DAY)]],
    "superseded": [
        [
            (PERMIT, "active", NOW - 30 * DAY, None, NOW - 30 * DAY),
            (DENY, "active", NOW - 2 * DAY, None, NOW - 2 * DAY),
        ]
    ],
    "withdrawn": [
        [
            (PERMIT, "active", NOW - 30 * DAY, None, NOW - 30 * DAY),
            (PERMIT, "withdrawn", NOW - 30 * DAY, None, NOW - 3 * DAY),
        ]
    ],
    "not-yet-valid": [[(PERMIT, "active", NOW + 10 * DAY, None, NOW - 30 * DAY)]],
    "expired": [[(PERMIT, "active", NOW - 30 * DAY, NOW - 5 * DAY, NOW - 30 * DAY)]],
    "amended-later": [
        [
            (PERMIT, "active", NOW - 30 * DAY, None, NOW - 30 * DAY),
            (DENY, "active", NOW + 5 * DAY, None, NOW + 4 * DAY),
        ]
    ],
    "amended-not-yet-valid": [
        [
            (PERMIT, "active", NOW - 30 * DAY, None, NOW - 30 * DAY),
            (("permit", ["ai.inference"], []), "active", NOW + 3 * DAY, None, NOW - 1 * DAY),
        ]
    ],
    "amended-twice": [
        [
            (PERMIT, "active", NOW - 30 * DAY, None, NOW - 30 * DAY),
            (DENY, "active", NOW - 20 * DAY, None, NOW - 20 * DAY),
            (("permit", ["ai.inference"], []), "active", NOW - 8 * DAY, None, NOW - 8 * DAY),
        ]
    ],
    "ts-date-passed": [
        [
            (
                ("permit", ["ai"], [f"TS:{(NOW - 4 * DAY).date()}"]),
                "active",
                NOW - 90 * DAY,
                None,
                NOW - 90 * DAY,
            )
        ]
    ],
    "ts-date-running": [
        [
            (
                ("permit", ["ai"], [f"TS:{(NOW + 4 * DAY).date()}"]),
                "active",
                NOW - 90 * DAY,
                None,
                NOW - 90 * DAY,
            )
        ]
    ],
    "ts-months-passed": [
        [(("permit", ["ai"], ["TS:2M"]), "active", NOW - 70 * DAY, None, NOW - 70 * DAY)]
    ],
    "ts-months-running": [
        [(("permit", ["ai"], ["TS:3M"]), "active", NOW - 70 * DAY, None, NOW - 70 * DAY)]
    ],
    "deny-with-ts": [
        [(("deny", ["ai"], ["TS:1M"]), "active", NOW - 70 * DAY, None, NOW - 70 * DAY)]
    ],
    "two-consents": [
        [(PERMIT, "active", NOW - 30 * DAY, None, NOW - 30 * DAY)],
        [
            (("deny", ["ai.generative"], []), "active", NOW - 30 * DAY, None, NOW - 30 * DAY),
            (("deny", ["ai.generative"], []), "withdrawn", NOW - 30 * DAY, None, NOW - 1 * DAY),
        ],
        [(("permit", ["ai"], ["NCU"]), "active", NOW - 9 * DAY, NOW + 9 * DAY, NOW - 9 * DAY)],
    ],
    "no-consent": [],
    "erased": [[(PERMIT, "active", NOW - 30 * DAY, None, NOW - 30 * DAY)]],
}
# Instants asked about: before, around and after the histories' changes.
INSTANTS = [NOW - 25 * DAY, NOW - 6 * DAY, NOW, NOW + 6 * DAY, NOW + 40 * DAY]


def _study(name: str) -> str:
    return f"1.2.826.0.1.{int(hashlib.sha256(name.encode()).hexdigest()[:12], 16)}"


@pytest.fixture
def histories(engine: Engine) -> dict[str, str]:
    """The subjects of ``HISTORIES``, each with a study of two images: subject by name."""
    subjects, versions, images = [], [], []
    for name, held in HISTORIES.items():
        sid = str(uuid.uuid4())
        subjects.append(
            {
                "id": sid,
                "pseudonym": hashlib.sha256(name.encode()).digest(),
                "created_at": NOW - 100 * DAY,
            }
        )
        for history in held:
            cid = str(uuid.uuid4())
            for n, ((kind, purposes, modifiers), status, start, end, recorded) in enumerate(
                history, 1
            ):
                versions.append(
                    {
                        "consent_id": cid,
                        "version": n,
                        "subject_id": sid,
                        "event": "granted" if n == 1 else "amended",
                        "status": status,
                        "decision": kind,
                        "purposes": purposes,
                        "modifiers": modifiers,
                        "scope": {},
                        "terms": terms_key(kind, purposes, modifiers, {}),
                        "valid_from": start,
                        "valid_until": end,
                        "withdrawn_at": recorded if status == "withdrawn" else None,
                        "recorded_at": recorded,
                        "source": "api",
                    }
                )
        for k, modality in enumerate(("CT", "MR")):
            sha = hashlib.sha256(f"{name}:{k}".encode()).hexdigest()
            images.append(
                {
                    "id": str(uuid.uuid4()),
                    "subject_id": sid,
                    "sha256": sha,
                    "leaf_hash": image_leaf(sha),
                    "study_uid": _study(name),
                    "modality": modality,
                    "body_part": "CHEST",
                    "size_bytes": 1,
                    "created_at": NOW - 100 * DAY,
                    "erased_at": NOW - DAY if name == "erased" else None,
                }
            )
    with transaction(engine) as session:
        bulk_insert(session, table_of(Subject), subjects)
        bulk_insert(session, table_of(ConsentVersion), versions)
        bulk_insert(session, table_of(Image), images)
    return {name: s["id"] for name, s in zip(HISTORIES, subjects, strict=True)}


def _described(found: dict[str, list[Any]]) -> dict[str, set[tuple[Any, ...]]]:
    return {
        sid: {(f.consent_id, f.version, f.decision, f.purposes, f.modifiers) for f in items}
        for sid, items in found.items()
        if items
    }


@pytest.mark.parametrize("list_from", [study_read.LIST_FROM, 1], ids=["in-list", "array"])
@pytest.mark.parametrize("as_of", INSTANTS, ids=["-25d", "-6d", "now", "+6d", "+40d"])
def test_study_read_chooses_the_versions_effective_consents_does(
    engine: Engine,
    histories: dict[str, str],
    as_of: datetime,
    list_from: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On PostgreSQL a batch names its studies as one array (``LIST_FROM``): with it
    lowered to 1, every read here takes that form, and must choose the same."""
    monkeypatch.setattr(study_read, "LIST_FROM", list_from)
    studies = [_study(name) for name in HISTORIES]
    sessions = session_factory(engine, readonly=True)
    with snapshot(engine) as session:
        sql, params = study_read.statement(engine, studies, as_of)
        read = study_read.parse(image_rows.fetch(session, sql, params))
        expected = effective_consents(session, as_of, list(histories.values()))
        # one study at a time, as a single authorize call reads it
        alone = [
            study_read.parse(image_rows.fetch(session, *study_read.statement(engine, [s], as_of)))
            for s in studies
        ]
    terms = study_read.Terms()
    chosen = study_read.facts(read.versions, as_of, terms.of(read.versions, sessions))
    assert _described(chosen) == _described(expected)
    assert set(read.images) == {_study(n) for n in HISTORIES if n != "erased"}
    for study, one in zip(studies, alone, strict=True):
        facts = study_read.facts(one.versions, as_of, terms.of(one.versions, sessions))
        subjects = {r.subject_id for r in one.images.get(study, [])}
        assert _described(facts).keys() <= subjects | {histories["erased"]}
        assert {s: v for s, v in _described(facts).items() if s in subjects} == {
            s: v for s, v in _described(expected).items() if s in subjects
        }
    # the choice depends on the instant: these histories do differ across INSTANTS
    if as_of == NOW:
        by_name = {name: _described(chosen).get(sid, set()) for name, sid in histories.items()}
        assert not by_name["withdrawn"]
        assert not by_name["expired"]
        assert not by_name["ts-date-passed"]
        assert not by_name["ts-months-passed"]
        assert by_name["ts-date-running"]
        assert by_name["ts-months-running"]
        assert by_name["deny-with-ts"]
        assert len(by_name["two-consents"]) == 2
        assert {v[1] for v in by_name["superseded"]} == {2}
        assert {v[1] for v in by_name["amended-later"]} == {1}
        assert not by_name["amended-not-yet-valid"]


@pytest.mark.parametrize("purpose", ["ai.inference", "ai.generative", "ai.training"])
def test_decide_answers_as_the_release_path_classes(
    engine: Engine, settings: Settings, histories: dict[str, str], purpose: str
) -> None:
    policies = load(default_directory())
    authorizer = Authorizer(engine, load_keyring(settings.keys_dir), "urn:t")
    sessions = session_factory(engine, readonly=True)
    studies = [_study(name) for name in HISTORIES]
    try:
        many = authorizer.decide_many(sessions, policies, purpose=purpose, study_uids=studies)
        fresh = Authorizer(engine, load_keyring(settings.keys_dir), "urn:t")
        asked = authorizer._purpose(purpose, False, NOBODY)  # the purpose as decide parses it
        for name, study, batch in zip(HISTORIES, studies, many, strict=True):
            with snapshot(engine) as session:
                rows = image_rows.of_study(session, study)
                expected = (
                    _verdict(
                        decision.classes_of_rows(
                            session, policies, asked, rows, utcnow(), action="infer"
                        ),
                        len(rows),
                    )
                    if rows
                    else None
                )
            if expected is None:
                assert name == "erased"
                assert batch is None
                with pytest.raises(NotFound):
                    fresh.decide(sessions, policies, purpose=purpose, study_uid=study)
                continue
            single = fresh.decide(sessions, policies, purpose=purpose, study_uid=study)
            assert single == expected, name
            assert batch == expected, name
        fresh.close()
    finally:
        authorizer.close()


def test_a_cold_decision_is_cached_under_the_mark_read_with_it(
    engine: Engine, settings: Settings, histories: dict[str, str]
) -> None:
    """A cold call reads the decision mark in the study's statement: a withdrawal after it
    moves the mark, so the next call decides again, single and batch alike."""
    policies = load(default_directory())
    sessions = session_factory(engine, readonly=True)
    study = _study("plain")
    ask: dict[str, Any] = {"purpose": "ai.inference", "study_uid": study}
    single = Authorizer(engine, load_keyring(settings.keys_dir), "urn:t")
    batch = Authorizer(engine, load_keyring(settings.keys_dir), "urn:t")
    try:
        assert single.decide(sessions, policies, **ask).permitted
        assert single.decide(sessions, policies, **ask).permitted  # from the cache
        many = batch.decide_many(sessions, policies, purpose="ai.inference", study_uids=[study])
        assert many[0] is not None
        assert many[0].permitted
        with transaction(engine) as session:
            (consent_id,) = session.execute(
                select(ConsentVersion.consent_id).where(  # type: ignore[call-overload]
                    ConsentVersion.subject_id == histories["plain"]
                )
            ).scalars()
            consents.withdraw(session, consent_id, WithdrawBody(), actor="t")
        assert not single.decide(sessions, policies, **ask).permitted
        again = batch.decide_many(sessions, policies, purpose="ai.inference", study_uids=[study])
        assert again[0] is not None
        assert not again[0].permitted
    finally:
        single.close()
        batch.close()


def test_a_miss_while_the_reader_is_busy_reads_in_a_session(
    engine: Engine, settings: Settings, histories: dict[str, str]
) -> None:
    """Concurrent misses do not queue for the authorizer's own connection: the same
    statement runs in a read-only session of the pool, with the same answer."""
    policies = load(default_directory())
    sessions = session_factory(engine, readonly=True)
    studies = [_study(name) for name in HISTORIES]
    own = Authorizer(engine, load_keyring(settings.keys_dir), "urn:t")
    busy = Authorizer(engine, load_keyring(settings.keys_dir), "urn:t")
    try:
        expected = own.decide_many(sessions, policies, purpose="ai.inference", study_uids=studies)
        with busy._reader.lock:  # another thread's miss holds it
            assert (
                busy.decide_many(sessions, policies, purpose="ai.inference", study_uids=studies)
                == expected
            )
            single = busy.decide(sessions, policies, purpose="ai.inference", study_uid=studies[0])
        assert single == expected[0]
    finally:
        own.close()
        busy.close()
