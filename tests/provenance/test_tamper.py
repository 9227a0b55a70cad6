"""Every way of rewriting history is prevented by the database or caught by verification.

Tampering is done the way an attacker with database access would: on PostgreSQL as the
superuser with triggers switched off (``session_replication_role = replica``), on SQLite by
dropping the triggers. Each case runs on both backends.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from ledger.canonical import canonical
from ledger.config import Settings
from ledger.consent import subjects
from ledger.db import snapshot, transaction
from ledger.keystore import KeyRing, load_keyring
from ledger.provenance import checkpoints, log
from ledger.provenance.commitments import (
    SubjectSalt,
    commit_with,
    erase_salt,
    subject_commitment,
)
from ledger.provenance.integrity import verify_database
from ledger.provenance.merkle import leaf_hash
from ledger.provenance.note import Checkpoint, sign
from ledger.provenance.verify import GENESIS_CHAIN, Report, SignedCheckpoint

ORIGIN = "ledger.local/log"


@pytest.fixture
def keys(settings: Settings) -> KeyRing:
    return load_keyring(settings.keys_dir)


def _append(engine: Engine, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        with transaction(engine) as session:
            log.append(session, "test.event", {"n": i, "dataset_id": f"d{i % 3}"}, actor="t")


def _checkpoint(engine: Engine, keys: KeyRing) -> str:
    with transaction(engine) as session:
        return checkpoints.create(session, checkpoints.LogTree(), keys, ORIGIN).note


def _verify(engine: Engine, keys: KeyRing, witnessed: list[SignedCheckpoint] = []) -> Report:  # noqa: B006
    with snapshot(engine) as session:
        return verify_database(session, checkpoints.verifiers(keys, ORIGIN), ORIGIN, witnessed)


@pytest.fixture
def history(engine: Engine, keys: KeyRing) -> str:
    """20 entries with a checkpoint at 10 and at 20; returns the newest note."""
    _append(engine, 10)
    _checkpoint(engine, keys)
    _append(engine, 10, start=10)
    note = _checkpoint(engine, keys)
    report = _verify(engine, keys)
    assert report.ok
    assert report.entries == 20
    assert report.checkpoints_checked == 2
    return note


def _tamper(engine: Engine, *statements: tuple[str, dict[str, object]]) -> None:
    """Run statements with the append-only triggers out of the way, as an attacker."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SET LOCAL session_replication_role = replica"))
            for sql, params in statements:
                conn.execute(text(sql), params)
            return
        triggers = conn.execute(
            text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'")
        ).all()
        for name, _ in triggers:
            conn.execute(text(f'DROP TRIGGER "{name}"'))
        for sql, params in statements:
            conn.execute(text(sql), params)
        for _, sql in triggers:
            conn.execute(text(sql))


def _entry(engine: Engine, seq: int) -> bytes:
    with engine.connect() as conn:
        return bytes(
            conn.execute(
                text("SELECT entry FROM log_entries WHERE seq = :s"), {"s": seq}
            ).scalar_one()
        )


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE log_entries SET event_type = 'x' WHERE seq = 3",
        "DELETE FROM log_entries WHERE seq = 19",
        "UPDATE log_checkpoints SET note = 'x'",
        "DELETE FROM log_checkpoints",
    ],
)
def test_database_refuses_changes_to_the_log(engine: Engine, history: str, sql: str) -> None:
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text(sql))


def test_postgresql_refuses_truncate(engine: Engine, history: str, backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("SQLite has no TRUNCATE; its DELETE is refused above")
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text("TRUNCATE log_entries CASCADE"))


def test_edited_entry_is_pinned_to_its_index(engine: Engine, keys: KeyRing, history: str) -> None:
    forged = _entry(engine, 7).replace(b'"n":7', b'"n":8')
    _tamper(engine, ("UPDATE log_entries SET entry = :e WHERE seq = 7", {"e": forged}))
    report = _verify(engine, keys)
    assert not report.ok
    assert report.first_bad_index == 7
    assert "edited" in report.faults[0].message


def test_rewrite_with_recomputed_hashes_is_caught_by_checkpoints(
    engine: Engine, keys: KeyRing, history: str
) -> None:
    """A careful attacker recomputes leaf and chain hashes: only signed roots catch it."""
    statements = []
    previous = GENESIS_CHAIN
    for seq in range(20):
        entry = _entry(engine, seq)
        if seq == 12:
            entry = entry.replace(b'"n":12', b'"n":99')
        leaf = leaf_hash(entry)
        previous = log.chain_hash(previous, leaf)
        statements.append(
            (
                "UPDATE log_entries SET entry = :e, leaf_hash = :l, chain_hash = :c WHERE seq = :s",
                {"e": entry, "l": leaf, "c": previous, "s": seq},
            )
        )
    _tamper(engine, *statements)
    report = _verify(engine, keys)
    assert not report.ok
    assert report.first_bad_index == 10  # the last checkpoint that still agrees
    assert "[10, 20) was rewritten" in report.faults[0].message


def test_deleted_entry_shows_as_a_gap(engine: Engine, keys: KeyRing, history: str) -> None:
    _tamper(
        engine,
        ("DELETE FROM log_refs WHERE seq = 5", {}),
        ("DELETE FROM log_entries WHERE seq = 5", {}),
    )
    report = _verify(engine, keys)
    assert report.first_bad_index == 5
    assert "missing" in report.faults[0].message


def test_truncated_tail_is_caught(engine: Engine, keys: KeyRing, history: str) -> None:
    _tamper(
        engine,
        ("DELETE FROM log_refs WHERE seq >= 15", {}),
        ("DELETE FROM log_entries WHERE seq >= 15", {}),
    )
    report = _verify(engine, keys)
    assert report.first_bad_index == 15
    assert "only 15" in report.faults[0].message


def test_reordered_entries_are_caught(engine: Engine, keys: KeyRing, history: str) -> None:
    a, b = _entry(engine, 3), _entry(engine, 4)
    _tamper(
        engine,
        ("UPDATE log_entries SET entry = :e WHERE seq = 3", {"e": b}),
        ("UPDATE log_entries SET entry = :e WHERE seq = 4", {"e": a}),
    )
    report = _verify(engine, keys)
    assert report.first_bad_index == 3
    assert "moved" in report.faults[0].message


def test_inserted_entry_is_caught(engine: Engine, keys: KeyRing, history: str) -> None:
    """Insert in the middle: everything after must be renumbered, which breaks the chain."""
    statements: list[tuple[str, dict[str, object]]] = [("DELETE FROM log_refs", {})]
    for seq in range(19, 7, -1):
        statements.append(
            ("UPDATE log_entries SET seq = :n WHERE seq = :s", {"n": seq + 1, "s": seq})
        )
    forged = canonical(
        {
            "v": 1,
            "seq": 8,
            "time": "2026-01-01T00:00:00.000000Z",
            "type": "grant.issued",
            "actor": "t",
            "data": {},
        }
    )
    statements.append(
        (
            "INSERT INTO log_entries (seq, event_type, entry, leaf_hash, chain_hash, recorded_at)"
            " SELECT 8, 'grant.issued', :e, :l, chain_hash, recorded_at FROM log_entries"
            " WHERE seq = 7",
            {"e": forged, "l": leaf_hash(forged)},
        )
    )
    _tamper(engine, *statements)
    report = _verify(engine, keys)
    assert report.first_bad_index == 8
    assert "chain broken" in report.faults[0].message


def test_appended_entry_with_forged_chain_is_caught(
    engine: Engine, keys: KeyRing, history: str
) -> None:
    forged = canonical({"v": 1, "seq": 20, "time": "t", "type": "x", "actor": None, "data": {}})
    _tamper(
        engine,
        (
            "INSERT INTO log_entries (seq, event_type, entry, leaf_hash, chain_hash, recorded_at)"
            " SELECT 20, 'x', :e, :l, :c, recorded_at FROM log_entries WHERE seq = 19",
            {"e": forged, "l": leaf_hash(forged), "c": b"\x00" * 32},
        ),
    )
    report = _verify(engine, keys)
    assert report.first_bad_index == 20


def test_forged_checkpoint_is_caught(engine: Engine, keys: KeyRing, history: str) -> None:
    forger = Ed25519PrivateKey.generate()
    fake = sign(Checkpoint(ORIGIN, 21, b"\x07" * 32), ORIGIN, forger)
    _tamper(
        engine,
        (
            "INSERT INTO log_checkpoints (size, root_hash, note, kid, created_at)"
            " SELECT 21, :r, :n, kid, created_at FROM log_checkpoints WHERE size = 20",
            {"r": b"\x07" * 32, "n": fake},
        ),
    )
    report = _verify(engine, keys)
    assert not report.ok
    assert any("no signature from a trusted key" in f.message for f in report.faults)


def test_checkpoint_row_altered_beside_its_note_is_caught(
    engine: Engine, keys: KeyRing, history: str
) -> None:
    _tamper(
        engine, ("UPDATE log_checkpoints SET root_hash = :r WHERE size = 10", {"r": b"\x01" * 32})
    )
    report = _verify(engine, keys)
    assert any("differs from the signed note" in f.message for f in report.faults)


def test_rollback_to_an_older_state_is_caught_by_a_saved_checkpoint(
    engine: Engine, keys: KeyRing, history: str
) -> None:
    """The attacker restores an old backup, checkpoints included; the auditor kept a note."""
    _tamper(
        engine,
        ("DELETE FROM log_refs WHERE seq >= 10", {}),
        ("DELETE FROM log_entries WHERE seq >= 10", {}),
        ("DELETE FROM log_checkpoints WHERE size > 10", {}),
    )
    assert _verify(engine, keys).ok  # self-consistent on its own...
    saved = SignedCheckpoint(history, "auditor's checkpoint")
    report = _verify(engine, keys, [saved])  # ...but not with what the auditor saw
    assert report.first_bad_index == 10
    assert "rolled back" in report.faults[0].message


def test_equivocation_is_caught(engine: Engine, keys: KeyRing, history: str) -> None:
    """Two validly signed trees of one size: the signer showed different histories."""
    other = sign(Checkpoint(ORIGIN, 20, b"\x09" * 32), ORIGIN, keys.active.private)
    report = _verify(engine, keys, [SignedCheckpoint(other, "note shown to another auditor")])
    assert any("equivocation" in f.message for f in report.faults)


WRITER = """
import sys
from ledger.db import make_engine, transaction
from ledger.canonical import canonical
from ledger.provenance import log
engine = make_engine(sys.argv[1])
i = 0
while True:
    with transaction(engine) as session:
        log.append(session, "test.writer", {"i": i, "pad": "x" * 200})
        print(i, flush=True)
    i += 1
"""


@pytest.fixture
def writer(db_url: str) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, db_url],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def test_killed_writer_leaves_no_gap_or_fork(
    engine: Engine, keys: KeyRing, writer: subprocess.Popen[str]
) -> None:
    assert writer.stdout is not None
    for _ in range(30):  # let it commit a few, then kill it mid-stream
        writer.stdout.readline()
    time.sleep(0.05)
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    _append(engine, 5)
    _checkpoint(engine, keys)
    report = _verify(engine, keys)
    assert report.ok, report.faults
    assert report.entries >= 35


def test_erased_subject_is_unlinkable_but_the_tree_still_verifies(
    engine: Engine, keys: KeyRing, settings: Settings
) -> None:
    with transaction(engine) as session:
        subject, _ = subjects.get_or_create(
            session, keys.pseudonym_key, "urn:issuer", "MRN-1", subjects.Demographics(), actor="t"
        )
        commitment = subject_commitment(session, subject.id)
    _checkpoint(engine, keys)
    with snapshot(engine) as session:
        salt = bytes(session.get(SubjectSalt, subject.id).salt)  # type: ignore[union-attr]
    assert commit_with(salt, subject.id) == commitment
    with engine.connect() as conn:
        entries = [bytes(e) for e in conn.execute(text("SELECT entry FROM log_entries")).scalars()]
    assert any(commitment.encode() in e for e in entries)
    assert not any(subject.id.encode() in e or b"MRN-1" in e for e in entries)

    with transaction(engine) as session:
        assert erase_salt(session, subject.id)
    report = _verify(engine, keys)
    assert report.ok
    assert report.checkpoints_checked == 1
    with snapshot(engine) as session:
        assert session.get(SubjectSalt, subject.id) is None
