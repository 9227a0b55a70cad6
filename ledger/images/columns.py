"""A dataset's image attributes as packed columns, written once when the dataset is created.

Evaluating an access request looks at every image of a dataset. Reading a million index rows
through a database driver costs seconds on either backend; the same attributes as a few
packed arrays load in milliseconds and are grouped with numpy. A dataset is frozen, and so
are the attributes the decision path reads (content leaf, subject, modality, body part,
study date, burned-in annotation, manufacturer), so the columns never go stale. Erasure is
the one change: it blanks the erased subject's study dates and manufacturers here as it does
in the image index. Subjects' demographics and erasure status change, and are read from the
subjects table at evaluation time, not kept here.

Text attributes are stored as codes into a per-dataset vocabulary (code 0 is "absent");
study dates as days since 1970-01-01 (``NO_DAY`` when absent); the arrays are one ``.npz``
blob (no pickles), in manifest (leaf) order. Given a ``Vault`` (the server, the CLI), the
blob is kept in the object store, sealed with AES-256-GCM under a key of its own that the
master key wraps in ``dataset_columns``: reading tens of megabytes from a file costs a
fraction of reading them out of a database row. Without one, or for datasets from before
vaults, the blob is in the row itself. Columns that cannot be read (the object missing, or
failing authentication) are rebuilt from the image index, so the store is never the only
copy of anything.
"""

from __future__ import annotations

import hashlib
import io
import logging
import struct
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session
from sqlmodel import col

from ledger import dialect
from ledger.db import driver_cursor, driver_rows
from ledger.errors import Gone, ServiceUnavailable
from ledger.images.models import DatasetColumns, DatasetImage, Image
from ledger.images.store import ObjectStore, seal, unseal
from ledger.packed import SortedIds

NO_DAY = np.iinfo(np.int32).min
TEXT = ("modality", "body_part", "burned_in", "manufacturer")
EPOCH = date(1970, 1, 1).toordinal()
FORMAT = 1

log = logging.getLogger(__name__)

IntArray = npt.NDArray[np.int32]
CodeArray = npt.NDArray[np.uint16]


@dataclass
class Columns:
    subjects: SortedIds  # distinct subject ids; ``subject`` indexes into them
    subject: IntArray
    codes: dict[str, CodeArray]  # one per TEXT attribute
    values: dict[str, list[str | None]]  # code → value, per TEXT attribute; [0] is None
    study_day: IntArray
    leaves: npt.NDArray[np.uint8]  # (n, 32)

    def __len__(self) -> int:
        return len(self.subject)

    def value(self, name: str, code: int) -> str | None:
        return self.values[name][code]

    def day(self, day: int) -> date | None:
        return None if day == NO_DAY else date.fromordinal(EPOCH + int(day))


def _day(value: Any) -> int:
    if value is None:
        return int(NO_DAY)
    if not isinstance(value, date):
        try:
            value = date.fromisoformat(str(value)[:10])
        except ValueError:
            return int(NO_DAY)
    return int(value.toordinal()) - EPOCH


def _encode(values: Iterable[Any]) -> tuple[CodeArray, list[str | None]]:
    vocabulary: dict[str | None, int] = {None: 0}
    codes = [vocabulary.setdefault(v, len(vocabulary)) if v else 0 for v in values]
    if len(vocabulary) > np.iinfo(np.uint16).max:
        raise ValueError("more than 65,535 distinct values of an image attribute")
    return np.array(codes, dtype=np.uint16), list(vocabulary)


def selected() -> tuple[Any, ...]:
    """What to select per image for ``of_rows``: the id, then the attributes kept here."""
    return (
        col(Image.id),
        col(Image.subject_id),
        col(Image.modality),
        col(Image.body_part),
        col(Image.study_date),
        col(Image.burned_in),
        col(Image.manufacturer),
        col(Image.leaf_hash),
    )


def of_rows(rows: Sequence[Sequence[Any]]) -> Columns:
    """Columns from rows shaped as ``selected()``, already in manifest order."""
    # Sorted, so per-subject work at evaluation comes out in subject order.
    subjects = SortedIds.of(r[1] for r in rows)
    subject = np.array([subjects.number_of[r[1]] for r in rows], dtype=np.int32)
    codes: dict[str, CodeArray] = {}
    values: dict[str, list[str | None]] = {}
    for name, position in zip(TEXT, (2, 3, 5, 6), strict=True):
        codes[name], values[name] = _encode(r[position] for r in rows)
    leaves = np.frombuffer(b"".join(bytes(r[7]) for r in rows), dtype=np.uint8)
    return Columns(
        subjects=subjects,
        subject=subject,
        codes=codes,
        values=values,
        study_day=np.array([_day(r[4]) for r in rows], dtype=np.int32),
        leaves=leaves.reshape(len(rows), 32),
    )


def _pack(columns: Columns) -> bytes:
    arrays: dict[str, Any] = {
        "format": np.array([FORMAT]),
        "subjects": columns.subjects.keys,
        "subject": columns.subject.astype("<i4"),
        "study_day": columns.study_day.astype("<i4"),
        "leaves": columns.leaves,
    }
    for name in TEXT:
        arrays[name] = columns.codes[name].astype("<u2")
        arrays[f"{name}_values"] = np.array(
            [(v or "").encode() for v in columns.values[name]], dtype=np.bytes_
        )
    out = io.BytesIO()
    np.savez(out, **arrays)
    return out.getvalue()


LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # a zip member's local file header


def _views(blob: bytes) -> dict[str, npt.NDArray[Any]]:
    """The arrays of an uncompressed ``.npz`` as read-only views into ``blob``: copying
    tens of megabytes of columns out of it costs more than everything else loading does."""
    out: dict[str, npt.NDArray[Any]] = {}
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:
        for info in archive.infolist():
            fields = LOCAL_HEADER.unpack_from(blob, info.header_offset)
            start = info.header_offset + LOCAL_HEADER.size + fields[10] + fields[11]
            if info.compress_type != zipfile.ZIP_STORED or info.file_size != info.compress_size:
                raise ValueError("dataset columns must be stored uncompressed")
            header = io.BytesIO(blob[start : start + min(info.file_size, 1 << 17)])
            version = np.lib.format.read_magic(header)
            shape, fortran, dtype = (
                np.lib.format.read_array_header_1_0(header)
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0(header)
            )
            if fortran or dtype.hasobject:
                raise ValueError("dataset columns hold plain C-ordered arrays only")
            count = int(np.prod(shape, dtype=np.int64))
            array = np.frombuffer(blob, dtype=dtype, count=count, offset=start + header.tell())
            out[info.filename.removesuffix(".npy")] = array.reshape(shape)
    return out


def _unpack(blob: bytes) -> Columns:
    data = _views(blob)
    if int(data["format"][0]) != FORMAT:
        raise ValueError(f"dataset columns of unknown format {int(data['format'][0])}")
    values: dict[str, list[str | None]] = {}
    for name in TEXT:
        decoded: list[str | None] = [v.decode() for v in data[f"{name}_values"].tolist()]
        decoded[0] = None
        values[name] = decoded
    return Columns(
        subjects=SortedIds(data["subjects"]),
        subject=data["subject"].astype(np.int32, copy=False),
        codes={name: data[name].astype(np.uint16, copy=False) for name in TEXT},
        values=values,
        study_day=data["study_day"].astype(np.int32, copy=False),
        leaves=data["leaves"],
    )


@dataclass(frozen=True)
class Vault:
    """Where columns are kept outside the database, and the key that wraps theirs."""

    store: ObjectStore
    master_key: bytes


def _label(dataset_id: str) -> str:
    return f"dataset-columns:{dataset_id}"  # bound into the seal: no swapping datasets


def store(
    session: Session, dataset_id: str, columns: Columns, vault: Vault | None = None
) -> str | None:
    """Keep the columns (replacing any kept before). Returns the address of the object
    they replace, if any: deleted here when there is a vault, and unreadable either way,
    its key being gone from the row."""
    session.flush()  # the dataset row first: the columns refer to it
    blob = _pack(columns)
    values: dict[str, Any] = {"image_count": len(columns)}
    if vault is None:
        values.update(arrays=blob, address=None, wrapped_key=None)
    else:
        key = AESGCM.generate_key(bit_length=256)
        sealed = seal(key, _label(dataset_id), blob)
        address = hashlib.sha256(sealed).hexdigest()
        vault.store.put(address, sealed)
        values.update(arrays=None, address=address, wrapped_key=aes_key_wrap(vault.master_key, key))
    table = DatasetColumns.__table__  # type: ignore[attr-defined]
    before = session.execute(
        select(table.c.address).where(table.c.dataset_id == dataset_id)
    ).first()
    if before is None:
        session.execute(insert(table).values(dataset_id=dataset_id, **values))
        return None
    session.execute(update(table).where(table.c.dataset_id == dataset_id).values(**values))
    if before[0] is None or before[0] == values["address"]:
        return None
    if vault is not None:
        vault.store.delete(before[0])
    return str(before[0])


def _rows_of(session: Session, dataset_id: str) -> list[Any]:
    return driver_rows(
        session,
        select(*selected())
        .join(DatasetImage, col(DatasetImage.image_id) == col(Image.id))
        .where(col(DatasetImage.dataset_id) == dataset_id)
        .order_by(col(DatasetImage.position)),
    )


Kept = tuple[bytes | None, str | None, bytes | None]  # arrays, address, wrapped key


def _kept(session: Session, dataset_id: str) -> Kept | None:
    conn = session.connection()
    if not dialect.is_postgres(conn):
        row = session.execute(
            select(
                col(DatasetColumns.arrays),
                col(DatasetColumns.address),
                col(DatasetColumns.wrapped_key),
            ).where(col(DatasetColumns.dataset_id) == dataset_id)
        ).first()
    else:
        # Tens of megabytes of bytea: the binary protocol skips hex-encoding them twice.
        with driver_cursor(session) as cursor:
            cursor.execute(
                "SELECT arrays, address, wrapped_key FROM dataset_columns WHERE dataset_id = %s",
                (dataset_id,),
                binary=True,
            )
            row = cursor.fetchone()
    if row is None:
        return None
    arrays, address, wrapped = row
    return (
        None if arrays is None else bytes(arrays),
        address,
        None if wrapped is None else bytes(wrapped),
    )


def _open(vault: Vault, dataset_id: str, address: str, wrapped: bytes) -> bytes | None:
    try:
        key = aes_key_unwrap(vault.master_key, wrapped)
        return unseal(key, _label(dataset_id), vault.store.get(address))
    except (Gone, ServiceUnavailable, InvalidUnwrap):
        log.warning("dataset %s: kept columns unreadable, rebuilding them", dataset_id)
        return None


def load(session: Session, dataset_id: str, vault: Vault | None = None) -> Columns:
    """The dataset's columns; rebuilt from the index (and kept) when there are none or
    they cannot be read. Columns kept in a vault are read only with it: without one they
    are rebuilt, and the vault's copy left as it is."""
    kept = _kept(session, dataset_id)
    if kept is not None:
        arrays, address, wrapped = kept
        if arrays is not None:
            return _unpack(arrays)
        if vault is not None and address is not None and wrapped is not None:
            opened = _open(vault, dataset_id, address, wrapped)
            if opened is not None:
                return _unpack(opened)
    columns = of_rows(_rows_of(session, dataset_id))
    if kept is None or vault is not None:
        store(session, dataset_id, columns, vault)
    return columns


def erase_subject(session: Session, subject_id: str, vault: Vault | None = None) -> int:
    """Blank the subject's study dates and manufacturers in every dataset holding its
    images, as erasure does in the image index. Returns how many datasets changed.

    Rewritten columns get a new key, so a copy of the old ones (a backup of the object
    store) can no longer be opened with the database's keys; the old object itself is
    deleted at once. Should the transaction then roll back, the row points at nothing and
    the next evaluation rebuilds the columns from the index."""
    dataset_ids = session.execute(
        select(col(DatasetImage.dataset_id))
        .join(Image, col(Image.id) == col(DatasetImage.image_id))
        .where(col(Image.subject_id) == subject_id)
        .distinct()
    ).scalars()
    changed = 0
    for dataset_id in list(dataset_ids):
        columns = load(session, dataset_id, vault)
        number = columns.subjects.number_of[subject_id]
        mine = columns.subject == number
        columns.study_day = columns.study_day.copy()  # loaded ones are read-only views
        columns.study_day[mine] = NO_DAY
        columns.codes["manufacturer"] = columns.codes["manufacturer"].copy()
        columns.codes["manufacturer"][mine] = 0
        store(session, dataset_id, columns, vault)
        changed += 1
    return changed
