"""Subjects by keyed pseudonym: stable, never storing the identifier."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, select

from ledger.config import Settings
from ledger.consent import subjects
from ledger.consent.models import Subject
from ledger.db import transaction
from ledger.errors import InvalidInput
from ledger.keystore import load_keyring
from ledger.provenance.commitments import erase_salt, subject_commitment
from ledger.provenance.models import LogEntry


def test_same_patient_same_subject_and_no_identifier_at_rest(
    engine: Engine, settings: Settings
) -> None:
    key = load_keyring(settings.keys_dir).pseudonym_key
    demo = subjects.Demographics(sex="F", birth_year=1970, site="north")
    with transaction(engine) as session:
        first, created = subjects.get_or_create(
            session, key, "urn:hosp", "MRN-0042", demo, actor=None
        )
        again, created_again = subjects.get_or_create(
            session, key, "urn:hosp", "MRN-0042", actor=None
        )
        other, _ = subjects.get_or_create(session, key, "urn:other", "MRN-0042", actor=None)
    assert created
    assert not created_again
    assert first.id == again.id != other.id
    with engine.connect() as conn:
        rows = conn.execute(select(Subject.pseudonym)).all()  # type: ignore[call-overload]
        entries = b"".join(bytes(e) for (e,) in conn.execute(select(LogEntry.entry)))  # type: ignore[call-overload]
    assert all(b"MRN-0042" not in bytes(r[0]) for r in rows)
    assert b"MRN-0042" not in entries
    assert first.id.encode() not in entries, "log names subjects by commitment only"


def test_commitment_is_unlinkable_after_erasure(engine: Engine) -> None:
    with transaction(engine) as session:
        session.add(Subject(id="s1", pseudonym=b"\x01" * 32))
        session.flush()
        c1 = subject_commitment(session, "s1")
        assert subject_commitment(session, "s1") == c1
        assert erase_salt(session, "s1")
        assert subject_commitment(session, "s1") != c1


@pytest.mark.parametrize(("issuer", "pid"), [("", "x"), ("a", " "), ("a|b", "x")])
def test_bad_identifiers_are_refused(issuer: str, pid: str) -> None:
    with pytest.raises(InvalidInput):
        subjects.pseudonym(b"k" * 32, issuer, pid)
