"""A dataset's packed columns say what the image index says, position by position; a
dataset from before the columns existed gets them on first use; erasure reaches them."""

from __future__ import annotations

import io

import numpy as np
import pytest
from cryptography.hazmat.primitives.keywrap import aes_key_wrap
from sqlalchemy import Engine, delete, update
from sqlmodel import col

from ledger.config import Settings
from ledger.db import snapshot, transaction
from ledger.images import columns
from ledger.images.models import DatasetColumns
from ledger.images.store import FilesystemStore
from ledger.keystore import load_keyring
from ledger.provenance.merkle import root_hash, root_of_packed
from tests.access.test_evaluation import manifest_rows, varied  # noqa: F401


def _index_rows(engine: Engine, dataset_id: str) -> list[tuple[object, ...]]:
    with snapshot(engine) as session:
        return [tuple(r) for r in manifest_rows(session, dataset_id)]


def test_columns_match_the_index_and_erasure_blanks_dates(engine: Engine, varied: str) -> None:  # noqa: F811
    rows = _index_rows(engine, varied)
    with snapshot(engine) as session:
        data = columns.load(session, varied)
    assert len(data) == len(rows)
    assert data.subjects.ids == sorted(data.subjects.ids)
    erased = 0
    for position, row in enumerate(rows):
        _, sid, modality, part, study_date, burned, manufacturer, leaf, erased_at = row
        assert data.subjects.ids[int(data.subject[position])] == sid
        assert data.value("modality", int(data.codes["modality"][position])) == (modality or None)
        assert data.value("body_part", int(data.codes["body_part"][position])) == (part or None)
        assert data.value("burned_in", int(data.codes["burned_in"][position])) == (burned or None)
        assert bytes(data.leaves[position]) == bytes(leaf)  # type: ignore[arg-type]
        day = data.day(int(data.study_day[position]))
        maker = data.value("manufacturer", int(data.codes["manufacturer"][position]))
        if erased_at is not None:  # stripped in the index, so stripped here
            erased += 1
            assert (day, maker) == (None, None)
        assert (day.isoformat() if day else None) == (str(study_date)[:10] if study_date else None)
        assert maker == (manufacturer or None)
    assert erased > 0
    leaves = [bytes(r[7]) for r in rows]  # type: ignore[arg-type]
    assert root_of_packed(data.leaves.tobytes()) == root_hash(leaves)


def test_a_dataset_without_columns_gets_them_on_first_use(engine: Engine, varied: str) -> None:  # noqa: F811
    with snapshot(engine) as session:
        before = columns.load(session, varied)
    with transaction(engine) as session:
        session.execute(delete(DatasetColumns).where(DatasetColumns.dataset_id == varied))  # type: ignore[arg-type]
    with transaction(engine) as session:
        rebuilt = columns.load(session, varied)
    with snapshot(engine) as session:
        assert session.get(DatasetColumns, varied) is not None  # kept for the next time
    _assert_same(rebuilt, before)


def _assert_same(got: columns.Columns, expected: columns.Columns) -> None:
    assert got.subjects.ids == expected.subjects.ids
    assert np.array_equal(got.subject, expected.subject)
    assert np.array_equal(got.study_day, expected.study_day)
    assert np.array_equal(got.leaves, expected.leaves)
    for name in columns.TEXT:
        decoded = [got.value(name, c) for c in got.codes[name].tolist()]
        assert decoded == [expected.value(name, c) for c in expected.codes[name].tolist()]


@pytest.fixture
def vault(settings: Settings) -> columns.Vault:
    return columns.Vault(
        FilesystemStore(settings.objects_dir), load_keyring(settings.keys_dir).master_key
    )


def _kept(engine: Engine, dataset_id: str) -> tuple[bytes | None, str | None, bytes | None]:
    with snapshot(engine) as session:
        row = session.get(DatasetColumns, dataset_id)
        assert row is not None
        return row.arrays, row.address, row.wrapped_key


@pytest.fixture
def vaulted(engine: Engine, varied: str, vault: columns.Vault) -> columns.Columns:  # noqa: F811
    """The varied dataset's columns, moved from its row into the vault."""
    with transaction(engine) as session:
        kept = columns.load(session, varied)
        assert columns.store(session, varied, kept, vault) is None  # nothing replaced
    return kept


def test_vaulted_columns_are_sealed_in_the_store_and_read_back(
    engine: Engine,
    varied: str,  # noqa: F811
    vault: columns.Vault,
    vaulted: columns.Columns,
) -> None:
    expected = vaulted
    arrays, address, wrapped = _kept(engine, varied)
    assert arrays is None
    assert address is not None
    assert wrapped is not None
    sealed = vault.store.get(address)
    assert expected.subjects.ids[0].encode() not in sealed  # not readable as it lies
    with snapshot(engine) as session:
        _assert_same(columns.load(session, varied, vault), expected)
        _assert_same(columns.load(session, varied), expected)  # rebuilt from the index
    assert _kept(engine, varied)[1] == address  # a caller without the vault changed nothing


@pytest.mark.parametrize("damage", ["missing", "altered", "other-dataset-key"])
def test_unreadable_vaulted_columns_are_rebuilt_from_the_index(
    engine: Engine,
    varied: str,  # noqa: F811
    vault: columns.Vault,
    vaulted: columns.Columns,
    damage: str,
) -> None:
    expected = vaulted
    _, address, _ = _kept(engine, varied)
    assert address is not None
    path = vault.store.path(address)  # type: ignore[attr-defined]
    if damage == "missing":
        path.unlink()
    elif damage == "altered":
        sealed = bytearray(path.read_bytes())
        sealed[100] ^= 1
        path.write_bytes(bytes(sealed))
    else:
        with transaction(engine) as session:
            session.execute(
                update(DatasetColumns)
                .where(col(DatasetColumns.dataset_id) == varied)
                .values(wrapped_key=aes_key_wrap(vault.master_key, bytes(32)))
            )
    with transaction(engine) as session:
        _assert_same(columns.load(session, varied, vault), expected)
    _, again, _ = _kept(engine, varied)
    assert again is not None
    assert again != address
    assert not path.exists()
    with snapshot(engine) as session:
        _assert_same(columns.load(session, varied, vault), expected)


def test_erasure_rewrites_vaulted_columns_under_a_new_key(
    engine: Engine,
    varied: str,  # noqa: F811
    vault: columns.Vault,
    vaulted: columns.Columns,
) -> None:
    before = vaulted
    _, address, wrapped = _kept(engine, varied)
    subject = next(
        sid
        for n, sid in enumerate(before.subjects.ids)
        if (before.study_day[before.subject == n] != columns.NO_DAY).any()
    )
    with transaction(engine) as session:
        assert columns.erase_subject(session, subject, vault) == 1
    _, new_address, new_wrapped = _kept(engine, varied)
    assert new_address != address
    assert new_wrapped != wrapped
    assert address is not None
    assert not vault.store.exists(address)
    with snapshot(engine) as session:
        after = columns.load(session, varied, vault)
    mine = after.subject == after.subjects.number_of[subject]
    assert (after.study_day[mine] == columns.NO_DAY).all()
    assert (after.codes["manufacturer"][mine] == 0).all()
    assert np.array_equal(after.study_day[~mine], before.study_day[~mine])


def test_columns_of_an_unknown_format_are_refused(engine: Engine, varied: str) -> None:  # noqa: F811
    with snapshot(engine) as session:
        blob = bytes(session.get(DatasetColumns, varied).arrays)  # type: ignore[union-attr]
    data = dict(np.load(io.BytesIO(blob), allow_pickle=False))
    data["format"] = np.array([99])
    out = io.BytesIO()
    np.savez(out, **data)
    with pytest.raises(ValueError, match="unknown format 99"):
        columns._unpack(out.getvalue())
    squeezed = io.BytesIO()
    np.savez_compressed(squeezed, **data)
    with pytest.raises(ValueError, match="uncompressed"):
        columns._unpack(squeezed.getvalue())
    loaded = columns._unpack(blob)
    assert not loaded.leaves.flags.writeable  # views into the blob, not copies


@pytest.mark.parametrize("count", [0, 1, 2, 3, 5, 8, 13, 33])
def test_packed_root_is_the_root_of_the_same_leaves(count: int) -> None:
    leaves = [bytes([n]) * 32 for n in range(count)]
    assert root_of_packed(b"".join(leaves)) == root_hash(leaves)


def test_packed_leaves_must_be_whole_hashes() -> None:
    with pytest.raises(ValueError, match="32-byte"):
        root_of_packed(b"\0" * 33)
