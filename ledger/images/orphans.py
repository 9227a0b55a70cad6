"""What a crash can leave in the object store, found and removed (``ledger doctor``).

Objects are written before the transaction that refers to them commits (ingest in
``images.service``, kept columns in ``images.columns``), and an erased subject's objects
are deleted after the erasure commits. A process killed between the two leaves:

* ``unreferenced``: an object no image row and no dataset-columns row names (the row
  rolled back with its transaction; its data key may have too);
* ``erased``: an object of an erased image (its key is shredded, so nobody can read it,
  but the deletion after the commit never ran);
* ``partial``: a temporary file of a write cut short.

None of them can be read through the ledger, so removing them loses nothing. The opposite
damage, an image row whose object is gone, cannot come from a crash (the object is on disk
before the row commits) and cannot be repaired here: it is reported as ``missing``.

An object written moments ago may belong to a transaction still running, so unreferenced
objects and partial writes younger than ``min_age`` are left alone, and each is looked up
again just before it is deleted.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from ledger.images.models import DatasetColumns, Image
from ledger.images.store import ObjectStore, Stored

BATCH = 2_000
MIN_AGE = 3_600.0  # seconds: far longer than any transaction that writes an object


@dataclass(frozen=True)
class Finding:
    name: str  # the object's address, or a partial write's file name
    kind: str  # unreferenced | erased | partial
    size: int
    age_seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "size": self.size,
            "age_seconds": round(self.age_seconds, 1),
        }


@dataclass
class Report:
    objects: int = 0  # files looked at in the store
    findings: list[Finding] = field(default_factory=list)
    recent: int = 0  # unreferenced or partial, but too young to judge
    missing: list[dict[str, str]] = field(default_factory=list)  # image rows without object
    removed: int = 0

    @property
    def clean(self) -> bool:
        return not self.missing and self.removed == len(self.findings)

    def as_dict(self) -> dict[str, Any]:
        return {
            "objects": self.objects,
            "findings": [f.as_dict() for f in self.findings],
            "recent": self.recent,
            "missing": self.missing,
            "removed": self.removed,
            "clean": self.clean,
        }


def _batches(items: Iterable[Stored]) -> Iterator[list[Stored]]:
    batch: list[Stored] = []
    for item in items:
        batch.append(item)
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _referenced(session: Session, addresses: list[str]) -> tuple[set[str], dict[str, bool]]:
    """Of ``addresses``: those dataset columns keep, and image addresses with whether the
    image was erased."""
    columns = {
        address
        for address in session.execute(
            select(col(DatasetColumns.address)).where(col(DatasetColumns.address).in_(addresses))
        ).scalars()
        if address is not None
    }
    images = {
        sha: erased is not None
        for sha, erased in session.execute(
            select(col(Image.sha256), col(Image.erased_at)).where(col(Image.sha256).in_(addresses))
        )
    }
    return columns, images


def _kind(stored: Stored, columns: set[str], images: dict[str, bool]) -> str | None:
    if stored.partial:
        return "partial"
    if stored.name in columns:
        return None
    if stored.name in images:
        return "erased" if images[stored.name] else None
    return "unreferenced"


def scan(session: Session, store: ObjectStore, *, min_age: float = MIN_AGE) -> Report:
    """Look at every object in the store and every live image row; change nothing."""
    report = Report()
    now = time.time()
    for batch in _batches(store.listing()):
        report.objects += len(batch)
        columns, images = _referenced(session, [s.name for s in batch if not s.partial])
        for stored in batch:
            kind = _kind(stored, columns, images)
            if kind is None:
                continue
            age = max(0.0, now - stored.modified)
            if kind != "erased" and age < min_age:
                report.recent += 1
                continue
            report.findings.append(Finding(stored.name, kind, stored.size, age))
    rows = session.execute(
        select(col(Image.id), col(Image.sha256)).where(col(Image.erased_at).is_(None))
    )
    for image_id, sha256 in rows:
        if not store.exists(sha256):
            report.missing.append({"image_id": image_id, "sha256": sha256})
    return report


def fix(session: Session, store: ObjectStore, report: Report, *, min_age: float = MIN_AGE) -> int:
    """Remove what ``scan`` found, each looked up again first (a row may have committed,
    or the object been written again, since the scan). Returns how many were removed."""
    session.rollback()  # end the scan's snapshot: the look-ups below must see new commits
    written_before = time.time() - min_age
    for finding in report.findings:
        if finding.kind == "unreferenced":
            columns, images = _referenced(session, [finding.name])
            if columns or images:
                continue
        removed = store.delete_stale(
            finding.name, time.time() if finding.kind == "erased" else written_before
        )
        report.removed += removed
    return report.removed
