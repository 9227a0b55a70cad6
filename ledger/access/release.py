"""Release: de-identified images out, under a grant, re-checked on every call (DESIGN §2.1).

A grant's manifest is frozen when it is issued (``grant_images``): its eligible images in
leaf order, each with a de-identified SOP Instance UID derived from a per-grant key, so the
same image released under two grants cannot be linked by its UIDs. Every release call
checks, in this order: the grant header (signature, ``typ``, audience, expiry), that it is
the grant named in the path and belongs to the calling pipeline, that it is not revoked,
that each instance is in the manifest, and that each instance is eligible *now* (current
consent and current policy, set-based for the batch). Only then are bytes decrypted,
de-identified and sent, and one log entry per call binds the released images by the
Merkle root of their leaves.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar, cast

from sqlalchemy import select
from sqlalchemy.orm import QueryableAttribute, Session, defer
from sqlmodel import col

from ledger.access import decision, release_render, tokens
from ledger.access.archive import Prepared, Quarantined, zip_stream
from ledger.access.classes import ImageClass
from ledger.access.grant_manifest import (
    Instance,
    instances_by_uid,
    manifest_entries,
)
from ledger.access.models import AccessRequest, Grant
from ledger.access.release_profile import deidentifier, options_for
from ledger.access.render_reuse import SeriesRenderer
from ledger.access.slots import Slots
from ledger.clock import timestamp, utcnow
from ledger.consent.purposes import Purpose
from ledger.errors import Conflict, Forbidden, Gone, LedgerError, NotFound, Unauthenticated
from ledger.images.models import Image
from ledger.images.sop_classes import header_quarantine
from ledger.images.store import ObjectStore, data_key
from ledger.keystore import KeyRing
from ledger.policy.engine import PolicySet
from ledger.provenance import log
from ledger.provenance.commitments import commitments_for
from ledger.provenance.merkle import root_hash

GRANT_HEADER = "Ledger-Grant"
RELEASE_AUDIENCE = "ledger-release"

_grant_tokens = tokens.Verified()


class NoLongerEligible(Gone):
    """An instance of the manifest whose subject no longer consents (or was erased)."""

    code = "no-longer-eligible"

    def __init__(self, refused: Refused) -> None:
        super().__init__(
            "this instance may no longer be released: " + "; ".join(refused.reasons),
            policy_ids=list(refused.policy_ids),
        )


class NotReleasable(Conflict):
    """De-identification refused the file (e.g. text may be burned into the pixels)."""

    code = "not-releasable"

    def __init__(self, reasons: list[str]) -> None:
        super().__init__("this instance cannot be safely de-identified: " + "; ".join(reasons))


@dataclass(frozen=True)
class Refused:
    """An instance a release call withholds, and why."""

    sop_instance_uid: str
    policy_ids: tuple[str, ...]
    reasons: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        """As ``ledger-refused.json`` lists it."""
        return {
            "sop_instance_uid": self.sop_instance_uid,
            "policy_ids": list(self.policy_ids),
            "reasons": list(self.reasons),
        }


QUARANTINED_BY_INDEX = ("a secondary capture not marked BurnedInAnnotation NO",)


@dataclass(frozen=True)
class OpenGrant:
    grant: Grant
    request: AccessRequest
    purpose: Purpose  # the request's; its text is the grant's ``purpose`` claim


# What a release call reads of the request is its purpose and counts: the evaluation, the
# classes and the per-image outcomes grow with the dataset and are loaded only if asked for.
_REQUEST_AT_RELEASE = tuple(
    defer(cast("QueryableAttribute[Any]", c))
    for c in (
        AccessRequest.evaluation,
        AccessRequest.classes,
        AccessRequest.outcomes,
        AccessRequest.justification,
    )
)


def open_grant(
    session: Session,
    keys: KeyRing,
    grant_id: str,
    token: str | None,
    *,
    pipeline_id: str,
    now: datetime | None = None,
) -> OpenGrant:
    """The grant, if ``token`` is that grant, valid now, held by ``pipeline_id`` and not
    revoked; otherwise the error that says which of these failed."""
    if not token:
        raise Unauthenticated(f"present the grant (compact JWS) in the {GRANT_HEADER} header")
    claims = _grant_tokens.verify(
        token.strip(),
        tokens.public_keys(keys),
        typ=tokens.GRANT_TYP,
        audience=RELEASE_AUDIENCE,
        now=now,
    )
    if claims["jti"] != grant_id:
        raise tokens.InvalidToken("the presented grant is not the grant named in the path")
    found = session.execute(
        select(Grant, AccessRequest)
        .join(AccessRequest, col(AccessRequest.id) == col(Grant.request_id))
        .where(col(Grant.id) == grant_id)
        .options(*_REQUEST_AT_RELEASE)
    ).one_or_none()
    if found is None:
        raise NotFound(f"no grant {grant_id}")
    grant, request = found
    if not hmac.compare_digest(token.strip().encode(), grant.token.encode()):
        raise tokens.InvalidToken("the presented grant is not the one this ledger issued")
    if grant.pipeline_id != pipeline_id or claims["sub"] != pipeline_id:
        raise Forbidden("this grant was issued to another pipeline")
    if grant.revoked_at is not None:
        raise Gone(
            f"the grant was revoked at {timestamp(grant.revoked_at)}: "
            f"{grant.revoke_reason or 'no reason given'}",
            revoked_at=timestamp(grant.revoked_at),
        )
    return OpenGrant(grant, request, decision.purpose_of(request))


def manifest(
    session: Session, policies: PolicySet, opened: OpenGrant, start: int, limit: int
) -> dict[str, Any]:
    """One page of the grant's manifest, each instance marked available or not now."""
    items, next_start = manifest_entries(session, opened.grant.id, start, limit)
    classes = eligibility_now(session, policies, opened, items) if items else []
    return {
        "grant_id": opened.grant.id,
        "purpose": opened.purpose.text,
        "manifest_root": bytes(opened.grant.manifest_root).hex(),
        "image_count": opened.request.eligible_count,
        "expires_at": opened.grant.expires_at,
        "items": [
            {
                "position": i.position,
                "sop_instance_uid": i.deid_uid,
                "available": c.eligible,
                **({} if c.eligible else {"policy_ids": list(c.policy_ids)}),
            }
            for i, c in zip(items, classes, strict=True)
        ],
        "next_start": next_start,
    }


def eligibility_now(
    session: Session, policies: PolicySet, opened: OpenGrant, instances: Sequence[Instance]
) -> list[ImageClass]:
    """Each instance's class under current consent and current policy."""
    image_ids = [i.image_id for i in instances]
    return decision.recheck(session, policies, opened.purpose, image_ids, utcnow())


def may_show_text(sop_class: str | None, burned_in: str | None) -> bool:
    """The de-identifier's quarantine rule, from the index (see ``Deidentifier.apply``)."""
    return header_quarantine(sop_class, burned_in) is not None


def prepare(
    session: Session,
    keys: KeyRing,
    policies: PolicySet,
    opened: OpenGrant,
    instances: Sequence[Instance],
    *,
    actor: str,
) -> tuple[list[Prepared], list[Refused]]:
    """Re-check ``instances`` now; log the release of those still eligible (one entry for
    the batch) and return them with their data keys, plus the refused ones with reasons."""
    classes = eligibility_now(session, policies, opened, instances)
    rows = {
        r.id: r
        for r in session.execute(
            select(
                col(Image.id),
                col(Image.subject_id),
                col(Image.sha256),
                col(Image.leaf_hash),
                col(Image.sop_class_uid),
                col(Image.burned_in),
            ).where(col(Image.id).in_([i.image_id for i in instances]))
        )
    }
    allowed: list[tuple[Instance, Any]] = []
    refused: list[Refused] = []
    for instance, cls in zip(instances, classes, strict=True):
        row = rows[instance.image_id]
        if cls.eligible and may_show_text(row.sop_class_uid, row.burned_in):
            # Known from the index before anything is decrypted, so the batch's log entry
            # never counts a file that de-identification would then withhold.
            refused.append(Refused(instance.deid_uid, ("deid-quarantine",), QUARANTINED_BY_INDEX))
        elif cls.eligible:
            allowed.append((instance, row))
        else:
            refused.append(Refused(instance.deid_uid, cls.policy_ids, cls.reasons))
    if not allowed:
        return [], refused
    subject_ids = sorted({row.subject_id for _, row in allowed})
    data_keys = {sid: data_key(session, keys.master_key, sid, create=False) for sid in subject_ids}
    commitments = commitments_for(session, subject_ids)
    log.append(
        session,
        "release.instances",
        {
            "grant_id": opened.grant.id,
            "purpose": opened.purpose.text,
            "subjects": sorted(commitments[s] for s in subject_ids),
            "count": len(allowed),
            "instances_root": root_hash(sorted(bytes(row.leaf_hash) for _, row in allowed)).hex(),
            "deid_options": sorted(o.value for o in options_for(opened.purpose)),
        },
        actor=actor,
    )
    prepared = [
        Prepared(i.deid_uid, str(row.sha256), data_keys[row.subject_id]) for i, row in allowed
    ]

    return prepared, refused


# The release calls: what the HTTP routes (and any other front door) call. Each opens the
# grant for the calling pipeline, re-checks what it asks for now, and logs a refusal in a
# transaction of its own, since the caller's transaction is rolled back with the error.

REFUSALS_LOGGED = frozenset({401, 403, 404, 410, 429})
T = TypeVar("T")


@dataclass(frozen=True)
class Desk:
    """What release needs beyond the request's session (built by ``ledger.wiring``)."""

    keys: KeyRing
    policies: PolicySet
    store: ObjectStore
    slots: Slots
    refusals: Callable[[], Session]  # a new session, for logging a refusal on its own


@dataclass(frozen=True)
class Download:
    """An archive stream to send: released and refused counts are known before it starts."""

    chunks: Iterator[bytes]
    released: int
    refused: int


def logging_refusals(
    desk: Desk, session: Session, grant_id: str, actor: str, action: Callable[[], T]
) -> T:
    """Run ``action``; if it refuses, roll back the caller's transaction (releasing
    SQLite's write lock), log the refusal in a transaction of its own, and re-raise."""
    try:
        return action()
    except LedgerError as exc:
        if exc.status in REFUSALS_LOGGED:
            session.rollback()
            with desk.refusals() as own:
                log.append(
                    own,
                    "refusal.release",
                    {"grant_id": grant_id, "status": exc.status, "code": exc.code},
                    actor=actor,
                )
                own.commit()
        raise


def manifest_page(
    session: Session,
    desk: Desk,
    grant_id: str,
    token: str | None,
    *,
    pipeline_id: str,
    start: int,
    limit: int,
) -> dict[str, Any]:
    """One page of the grant's manifest, each instance marked available or not now."""

    def run() -> dict[str, Any]:
        opened = open_grant(session, desk.keys, grant_id, token, pipeline_id=pipeline_id)
        return manifest(session, desk.policies, opened, start, limit)

    return logging_refusals(desk, session, grant_id, pipeline_id, run)


def instance(
    session: Session, desk: Desk, grant_id: str, token: str | None, uid: str, *, pipeline_id: str
) -> bytes:
    """One de-identified DICOM file; Gone if its subject no longer consents, NotFound if
    it is not in the manifest, NotReleasable if de-identification withholds it."""

    def run() -> bytes:
        opened = open_grant(session, desk.keys, grant_id, token, pipeline_id=pipeline_id)
        found = instances_by_uid(session, grant_id, [uid])
        ready, refused = prepare(
            session, desk.keys, desk.policies, opened, found, actor=pipeline_id
        )
        if refused:
            raise NoLongerEligible(refused[0])
        engine = deidentifier(desk.keys, grant_id, opened.purpose)
        try:
            return release_render.render(desk.store, engine, ready[0])  # archive.render's bytes
        except Quarantined as exc:
            raise NotReleasable(exc.reasons) from exc

    return logging_refusals(desk, session, grant_id, pipeline_id, run)


def download(
    session: Session,
    desk: Desk,
    grant_id: str,
    token: str | None,
    uids: Sequence[str],
    *,
    pipeline_id: str,
) -> Download:
    """Many instances as one zip stream; those no longer eligible are left out and listed
    in ``ledger-refused.json``. Holds one of the grant's download slots until the stream
    ends, so a pipeline cannot starve others by opening many at once."""

    def run() -> Download:
        opened = open_grant(session, desk.keys, grant_id, token, pipeline_id=pipeline_id)
        found = instances_by_uid(session, grant_id, uids)
        desk.slots.take(grant_id)
        try:
            ready, refused = prepare(
                session, desk.keys, desk.policies, opened, found, actor=pipeline_id
            )
        except BaseException:
            desk.slots.give(grant_id)
            raise
        engine = deidentifier(desk.keys, grant_id, opened.purpose)

        def stream() -> Iterator[bytes]:
            try:
                yield from zip_stream(
                    SeriesRenderer(desk.store, engine).render_file,
                    ready,
                    [r.as_json() for r in refused],
                )
            finally:
                desk.slots.give(grant_id)

        return Download(stream(), len(ready), len(refused))

    return logging_refusals(desk, session, grant_id, pipeline_id, run)
