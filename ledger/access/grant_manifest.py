"""A grant's frozen manifest, written once when the grant is issued.

Its eligible images in leaf order, each with a de-identified SOP Instance UID derived from
a per-grant key, so the same image released under two grants cannot be linked by its
UIDs, and a position is the image's leaf index under the grant's ``manifest_root``.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
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


@dataclass(frozen=True)
class Placed:
    """A manifest entry with what the index says of it (original UIDs: never released)."""

    instance: Instance
    study_uid: str
    series_uid: str
    sop_class_uid: str | None
    modality: str | None
    burned_in: str | None


STUDY_CACHE_GRANTS = 64
CHUNK = 500
_studies_cache: OrderedDict[str, tuple[str, ...]] = OrderedDict()
_studies_lock = threading.Lock()


def studies(session: Session, grant_id: str) -> tuple[str, ...]:
    """The original Study Instance UIDs of the grant's manifest, each once, in manifest
    order (by its first position).

    The manifest is frozen, so this is read once per grant and process and kept (for the
    last ``STUDY_CACHE_GRANTS`` grants): a search or a retrieval then reads only the rows
    of the studies it needs, not the whole manifest of a million-image grant. An image
    erased since keeps its place here; its rows no longer match (``placed`` drops it)."""
    with _studies_lock:
        cached = _studies_cache.get(grant_id)
        if cached is not None:
            _studies_cache.move_to_end(grant_id)
            return cached
    first = func.min(col(GrantImage.position))
    found = tuple(
        str(study)
        for study, _ in session.execute(
            select(col(Image.study_uid), first)
            .join(Image, col(Image.id) == col(GrantImage.image_id))
            .where(col(GrantImage.grant_id) == grant_id, col(Image.study_uid).is_not(None))
            .group_by(col(Image.study_uid))
            .order_by(first)
        )
    )
    with _studies_lock:
        _studies_cache[grant_id] = found
        while len(_studies_cache) > STUDY_CACHE_GRANTS:
            _studies_cache.popitem(last=False)
    return found


def placed(session: Session, grant_id: str, study_uids: Sequence[str]) -> list[Placed]:
    """The grant's manifest entries of the studies ``study_uids`` (original UIDs), in
    manifest order: an indexed read of those studies only (``images.study_uid``)."""
    out: list[Placed] = []
    wanted = list(dict.fromkeys(study_uids))
    for i in range(0, len(wanted), CHUNK):
        rows = session.execute(
            select(
                col(GrantImage.position),
                col(GrantImage.image_id),
                col(GrantImage.deid_uid),
                col(Image.study_uid),
                col(Image.series_uid),
                col(Image.sop_class_uid),
                col(Image.modality),
                col(Image.burned_in),
            )
            .join(Image, col(Image.id) == col(GrantImage.image_id))
            .where(
                # Compared as an expression, so no index of grant_id is used: from the
                # studies' images (ix_images_study_uid) to their manifest rows (by
                # image_id), never a walk of the grant's whole manifest, which SQLite
                # without statistics chose (0.17 ms a call at 480 images, and growing
                # with the grant: 0.008 ms this way).
                col(GrantImage.grant_id).concat("") == grant_id,
                col(Image.study_uid).in_(wanted[i : i + CHUNK]),
            )
        )
        for position, image_id, uid, study, series, sop_class, modality, burned in rows:
            if study is None or series is None:
                continue  # erased since the grant was issued: nothing of it is released
            out.append(
                Placed(
                    Instance(position, image_id, uid), study, series, sop_class, modality, burned
                )
            )
    out.sort(key=lambda p: p.instance.position)
    return out
