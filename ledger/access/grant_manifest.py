"""A grant's frozen manifest, written once when the grant is issued.

Its eligible images in leaf order, each with a de-identified SOP Instance UID derived from
a per-grant key, so the same image released under two grants cannot be linked by its
UIDs, and a position is the image's leaf index under the grant's ``manifest_root``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from ledger.access.classes import Outcomes
from ledger.access.models import AccessRequest, GrantImage
from ledger.db import bulk_insert
from ledger.dbtypes import table_of
from ledger.errors import Gone, NotFound
from ledger.images.deid import Deidentifier
from ledger.images.models import DatasetImage, Image
from ledger.keystore import KeyRing
from ledger.provenance.merkle import root_hash


def release_key(keys: KeyRing, grant_id: str) -> bytes:
    """The grant's de-identification key: pseudonyms, UIDs and date shifts are stable
    within a grant (a pipeline can resume a download) and unlinkable across grants."""
    return hmac.new(
        keys.master_key, b"ledger-release/" + grant_id.encode(), hashlib.sha256
    ).digest()


def freeze(session: Session, keys: KeyRing, request: AccessRequest, grant_id: str) -> int:
    """Write the grant's manifest: the request's eligible images, in leaf order (so a
    position is the image's leaf index under the grant's ``manifest_root``)."""
    eligible = Outcomes.stored(request.classes, request.outcomes).eligible().tolist()
    rows = session.execute(
        select(col(DatasetImage.position), col(Image.id), col(Image.leaf_hash), col(Image.sop_uid))
        .join(Image, col(Image.id) == col(DatasetImage.image_id))
        .where(col(DatasetImage.dataset_id) == request.dataset_id)
        .order_by(col(DatasetImage.position))
    ).all()
    chosen = sorted(
        ((bytes(leaf), image_id, sop) for pos, image_id, leaf, sop in rows if eligible[pos]),
    )
    if root_hash([leaf for leaf, _, _ in chosen]) != bytes(request.eligible_root):
        # The dataset or its images changed under the request: refuse rather than sign a
        # grant whose manifest differs from what was evaluated.
        raise Gone("the evaluated images are no longer all available; file a new request")
    engine = Deidentifier(release_key(keys, grant_id))
    bulk_insert(
        session,
        table_of(GrantImage),
        [
            {
                "grant_id": grant_id,
                "position": n,
                "image_id": image_id,
                "deid_uid": engine.uid(sop or image_id),
            }
            for n, (_, image_id, sop) in enumerate(chosen)
        ],
    )
    return len(chosen)


@dataclass(frozen=True)
class Instance:
    position: int
    image_id: str
    deid_uid: str


def manifest_entries(
    session: Session, grant_id: str, start: int, limit: int
) -> tuple[list[Instance], int | None]:
    rows = session.execute(
        select(col(GrantImage.position), col(GrantImage.image_id), col(GrantImage.deid_uid))
        .where(col(GrantImage.grant_id) == grant_id, col(GrantImage.position) >= start)
        .order_by(col(GrantImage.position))
        .limit(limit + 1)
    ).all()
    items = [Instance(p, i, u) for p, i, u in rows[:limit]]
    return items, (rows[limit][0] if len(rows) > limit else None)


def instances_by_uid(session: Session, grant_id: str, uids: Sequence[str]) -> list[Instance]:
    """The manifest entries for ``uids``; NotFound names any that are not in it."""
    wanted = list(dict.fromkeys(uids))
    found: dict[str, Instance] = {}
    for i in range(0, len(wanted), 1000):
        for p, image_id, uid in session.execute(
            select(col(GrantImage.position), col(GrantImage.image_id), col(GrantImage.deid_uid))
            .where(col(GrantImage.grant_id) == grant_id)
            .where(col(GrantImage.deid_uid).in_(wanted[i : i + 1000]))
        ):
            found[uid] = Instance(p, image_id, uid)
    missing = [u for u in wanted if u not in found]
    if missing:
        raise NotFound(
            f"{len(missing)} instance(s) are not in this grant's manifest", missing=missing[:50]
        )
    return [found[u] for u in wanted]
