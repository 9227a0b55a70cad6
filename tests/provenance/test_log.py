"""The append primitive: contiguous sequence, valid chain, same transaction as the change."""

from __future__ import annotations

import hashlib
import json
import threading

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select

from ledger.canonical import canonical
from ledger.db import make_engine, transaction
from ledger.provenance import log
from ledger.provenance.merkle import leaf_hash
from ledger.provenance.models import LogEntry


def _entries(engine: Engine) -> list[LogEntry]:
    with transaction(engine) as session:
        return list(session.execute(select(LogEntry).order_by(LogEntry.seq)).scalars())  # type: ignore[arg-type]


def _check_chain(entries: list[LogEntry]) -> None:
    previous = log.GENESIS_CHAIN
    for i, e in enumerate(entries):
        assert e.seq == i
        assert bytes(e.leaf_hash) == leaf_hash(bytes(e.entry))
        assert bytes(e.chain_hash) == hashlib.sha256(previous + bytes(e.leaf_hash)).digest()
        assert json.loads(bytes(e.entry))["seq"] == i
        previous = bytes(e.chain_hash)


def test_entries_are_canonical_and_chained(engine: Engine) -> None:
    with transaction(engine) as session:
        first = log.append(session, "test.event", {"b": 2, "a": [1, "é"]}, actor="someone")
        log.append(session, "test.event", {"z": None})
    assert first.seq == 0
    entries = _entries(engine)
    _check_chain(entries)
    raw = bytes(entries[0].entry)
    assert raw == canonical(json.loads(raw)), "entries are stored in RFC 8785 form"
    assert raw.index(b'"a"') < raw.index(b'"b"')


def test_append_rolls_back_with_the_change(engine: Engine) -> None:
    with transaction(engine) as session:
        log.append(session, "kept", {})

    def failing_change() -> None:
        with transaction(engine) as session:
            log.append(session, "lost", {})
            raise RuntimeError("the change failed")

    with pytest.raises(RuntimeError):
        failing_change()
    assert [json.loads(bytes(e.entry))["type"] for e in _entries(engine)] == ["kept"]


def test_concurrent_writers_leave_no_gap_or_fork(settings, db_url: str) -> None:  # type: ignore[no-untyped-def]
    writers, per_writer = 4, 40
    errors: list[BaseException] = []

    def work(n: int) -> None:
        eng = make_engine(db_url)
        try:
            for i in range(per_writer):
                with transaction(eng) as session:
                    log.append(session, "concurrent", {"writer": n, "i": i})
        except BaseException as exc:
            errors.append(exc)
        finally:
            eng.dispose()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    check = make_engine(db_url)
    try:
        entries = _entries(check)
    finally:
        check.dispose()
    assert len(entries) == writers * per_writer
    _check_chain(entries)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**60), max_value=2**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=500, deadline=None)
@given(json_values)
def test_canonical_fast_path_matches_the_reference(value: object) -> None:
    try:
        expected = rfc8785.dumps(value)
    except Exception:  # the reference refuses it (e.g. a huge integer): so must we
        with pytest.raises(Exception):  # noqa: B017, PT011
            canonical(value)
        return
    assert canonical(value) == expected
