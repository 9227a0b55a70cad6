"""HTTP routes pipelines use with a grant: manifest, instances, archives; revocations;
authorize.

Every release route takes the grant in the ``Ledger-Grant`` header *and* the pipeline's own
API key, and calls one function of ``ledger.access.release``, which checks, logs and logs
refusals; a refusal is answered here with problem+json.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Header, Query
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from ledger.access import release, revocations, visibility
from ledger.access.asker import Asker
from ledger.access.authorize import FLUSH_AT, FLUSH_WAIT_AT, UNKNOWN_STUDY
from ledger.access.models import Grant
from ledger.errors import NotFound
from ledger.fields import FreeText, Identifier, Instant
from ledger.http.deps import AppState, SessionDep, StateDep, WriteSessionDep
from ledger.http.security import (
    Caller,
    Pipeline,
    PipelineOrOversight,
    ReadonlyPipeline,
    Steward,
)
from ledger.limits import MAX_INT

router = APIRouter(tags=["release"])
log = logging.getLogger("ledger.http")

GrantHeader = Annotated[
    str | None,
    Header(alias=release.GRANT_HEADER, description="The grant, a compact JWS."),
]
MAX_BATCH = 256
T = TypeVar("T")


class ArchiveBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sop_instance_uids: list[Annotated[Identifier, Field(max_length=64)]] = Field(
        min_length=1, max_length=MAX_BATCH
    )


@router.get("/v1/grants/{grant_id}")
def get_grant(grant_id: str, session: SessionDep, caller: PipelineOrOversight) -> dict[str, Any]:
    """A grant's status (and, for the pipeline it was issued to, the token itself);
    pipelines see their own grants only."""
    grant = session.get(Grant, grant_id)
    if grant is None:
        raise NotFound(f"no grant {grant_id}")
    visibility.ensure_visible(
        caller, grant.pipeline_id, "this grant was issued to another pipeline"
    )
    return {
        "id": grant.id,
        "request_id": grant.request_id,
        "pipeline_id": grant.pipeline_id,
        "kid": grant.kid,
        "manifest_root": bytes(grant.manifest_root).hex(),
        "issued_at": grant.issued_at,
        "expires_at": grant.expires_at,
        "revoked_at": grant.revoked_at,
        "revoke_reason": grant.revoke_reason,
        # The token is useless without the pipeline's own API key, but only its holder
        # needs it.
        "token": grant.token if grant.pipeline_id == caller.id else None,
    }


@router.get("/v1/grants/{grant_id}/manifest")
def manifest(
    grant_id: str,
    session: SessionDep,
    state: StateDep,
    caller: Pipeline,
    grant_token: GrantHeader = None,
    start: Annotated[int, Query(ge=0, le=MAX_INT, description="first position (cursor)")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 1000,
) -> dict[str, Any]:
    """One page of the grant's manifest: de-identified instance UIDs in leaf order, each
    marked ``available`` or not under current consent (download only the available ones;
    delete local copies of the others)."""
    return release.manifest_page(
        session,
        state.release_desk(),
        grant_id,
        grant_token,
        pipeline_id=caller.id,
        start=start,
        limit=limit,
    )


@router.get(
    "/v1/grants/{grant_id}/instances/{uid}",
    response_class=Response,
    responses={200: {"content": {"application/dicom": {}}}},
)
def instance(
    grant_id: str,
    uid: str,
    session: WriteSessionDep,  # a GET that logs the release: its transaction commits
    state: StateDep,
    caller: Pipeline,
    grant_token: GrantHeader = None,
) -> Response:
    """One de-identified DICOM instance (``application/dicom``); 410 if its subject no
    longer consents, 404 if it is not in the manifest."""
    data = release.instance(
        session, state.release_desk(), grant_id, grant_token, uid, pipeline_id=caller.id
    )
    return Response(
        data,
        media_type="application/dicom",
        headers={"Content-Disposition": f'attachment; filename="{uid}.dcm"'},
    )


@router.post(
    "/v1/grants/{grant_id}/archive",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/zip": {}}}},
)
def download_archive(
    grant_id: str,
    body: ArchiveBody,
    session: SessionDep,
    state: StateDep,
    caller: Pipeline,
    grant_token: GrantHeader = None,
) -> StreamingResponse:
    """Many instances in one zip stream (``<uid>.dcm`` each), up to 256 per call. Instances
    no longer eligible are left out and listed in ``ledger-refused.json``."""
    download = release.download(
        session,
        state.release_desk(),
        grant_id,
        grant_token,
        body.sop_instance_uids,
        pipeline_id=caller.id,
    )
    return StreamingResponse(
        download.chunks,
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="{grant_id}.zip"',
            "Ledger-Released": str(download.released),
            "Ledger-Refused": str(download.refused),
        },
    )


class RevokeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: FreeText = Field(min_length=1, max_length=2000)


@router.post("/v1/grants/{grant_id}/revoke")
def revoke(grant_id: str, body: RevokeBody, session: SessionDep, caller: Steward) -> dict[str, Any]:
    """Revoke a grant: every release under it is refused from now on (410)."""
    grant = revocations.revoke(session, grant_id, reason=body.reason, actor=caller.id)
    return {"id": grant.id, "revoked_at": grant.revoked_at, "reason": grant.revoke_reason}


@router.get("/v1/revocations")
def list_revocations(
    session: SessionDep,
    state: StateDep,
    caller: PipelineOrOversight,
    since: Annotated[
        Instant,
        Query(description="ISO 8601 with time zone; use the previous answer's `until`"),
    ],
) -> dict[str, Any]:
    """Grants revoked and manifest instances no longer usable since ``since``: delete
    local copies of what is listed. Pipelines see their own grants."""
    from ledger.consent.service import check_as_of

    moment = check_as_of(since)
    return revocations.changes(
        session, state.policies, moment, pipeline_id=visibility.owner_filter(caller)
    )


class AuthorizeAsk(BaseModel):
    """What an authorize call asks, one study or a batch."""

    model_config = ConfigDict(extra="forbid")

    purpose: Identifier = Field(min_length=1, max_length=200, examples=["ai.inference"])
    commercial: bool = False
    clinical_care: bool = Field(
        default=False,
        description="for a patient's clinical care: a consent carrying CC (DUO:0000043) "
        "serves ai.inference only for such a call",
    )


class AuthorizeBody(AuthorizeAsk):
    study_instance_uid: Identifier = Field(min_length=1, max_length=64)


@router.post("/v1/authorize", tags=["authorize"])
async def authorize(
    body: AuthorizeBody, state: StateDep, caller: ReadonlyPipeline
) -> dict[str, Any]:
    """May this pipeline run ``purpose`` on this study now? Permit or deny with reasons
    and a signed decision token (``typ: ledger-decision+jwt``, valid five minutes).

    Decides in a read-only transaction (on SQLite it takes no write lock, so authorize
    calls never queue behind writers), weighing what the pipeline's principal records
    (organisation type for NPU, region for GS, institution for IS, its id for US) and
    ``clinical_care`` (CC); decisions are logged in batches.

    async, with the database work sent to the thread pool: a cached decision (the common
    case) is answered on the event loop, as the authentication has read the decision mark
    (each hand-off to a thread and back was a fifth of a warm call's CPU time)."""
    authorizer = state.authorizer
    ask: dict[str, Any] = {
        "purpose": body.purpose,
        "study_uid": body.study_instance_uid,
        "commercial": body.commercial,
        "asker": Asker.of(caller, clinical_care=body.clinical_care),
    }
    decision = (
        None
        if caller.decision_mark is None
        else authorizer.cached(state.policies, head=caller.decision_mark, **ask)
    )
    if decision is None:
        try:
            decision = await run_in_threadpool(
                partial(authorizer.decide, state.read_sessions, state.policies, **ask)
            )
        except NotFound:
            authorizer.decisions.refused(pipeline_id=caller.id, study_uid=body.study_instance_uid)
            raise
    token = authorizer.token(
        decision,
        pipeline_id=caller.id,
        purpose=body.purpose,
        study_uid=body.study_instance_uid,
        policy=state.policies.hash,
    )
    await _log_decisions(state)
    return {
        "decision": "permit" if decision.permitted else "deny",
        "reasons": list(decision.reasons),
        "policy_ids": list(decision.policy_ids),
        "images": decision.images,
        "token": token,
    }


MAX_AUTHORIZE_BATCH = 1_000


class AuthorizeBatchBody(AuthorizeAsk):
    study_instance_uids: list[Annotated[Identifier, Field(min_length=1, max_length=64)]] = Field(
        min_length=1, max_length=MAX_AUTHORIZE_BATCH
    )


@router.post("/v1/authorize/batch", tags=["authorize"])
async def authorize_batch(
    body: AuthorizeBatchBody, state: StateDep, caller: ReadonlyPipeline
) -> dict[str, Any]:
    """``/v1/authorize`` for up to 1,000 studies in one call: one answer per study, in
    the order given, with the same rules, tokens and batched logging.

    A study the ledger does not know (the single call's 404) is answered in place with
    ``decision: not-found``, the reason, and no token; it is logged like the single
    call's refusal. An unknown purpose refuses the whole call, as the single call."""
    answers = await run_in_threadpool(_batch_answers, body, state, caller)
    await _log_decisions(state)
    return {"purpose": body.purpose, "decisions": answers}


def _batch_answers(
    body: AuthorizeBatchBody, state: AppState, caller: Caller
) -> list[dict[str, Any]]:
    authorizer = state.authorizer
    decisions = authorizer.decide_many(
        state.read_sessions,
        state.policies,
        purpose=body.purpose,
        study_uids=body.study_instance_uids,
        commercial=body.commercial,
        asker=Asker.of(caller, clinical_care=body.clinical_care),
        head=caller.decision_mark,
    )
    known = [
        (d, uid)
        for d, uid in zip(decisions, body.study_instance_uids, strict=True)
        if d is not None
    ]
    signed = iter(
        authorizer.tokens(
            known, pipeline_id=caller.id, purpose=body.purpose, policy=state.policies.hash
        )
    )
    answers: list[dict[str, Any]] = []
    for decision, uid in zip(decisions, body.study_instance_uids, strict=True):
        if decision is None:
            authorizer.decisions.refused(pipeline_id=caller.id, study_uid=uid)
            answers.append(
                {
                    "study_instance_uid": uid,
                    "decision": "not-found",
                    "reasons": [UNKNOWN_STUDY],
                    "policy_ids": [],
                    "images": 0,
                    "token": None,
                }
            )
        else:
            answers.append(
                {
                    "study_instance_uid": uid,
                    "decision": "permit" if decision.permitted else "deny",
                    "reasons": list(decision.reasons),
                    "policy_ids": list(decision.policy_ids),
                    "images": decision.images,
                    "token": next(signed),
                }
            )
    return answers


_flushing: set[asyncio.Task[Any]] = set()  # strong references until each is done


async def _log_decisions(state: AppState) -> None:
    """Log the pending decisions once ``FLUSH_AT`` have gathered: in the background, so no
    call waits for the log's write lock (on SQLite it queues behind every writer); a call
    waits only when ``FLUSH_WAIT_AT`` are pending, which bounds them while the database is
    slow or away."""
    authorizer = state.authorizer
    if authorizer.decisions.pending >= FLUSH_WAIT_AT:
        await run_in_threadpool(authorizer.decisions.flush, state.write_sessions)
    elif authorizer.decisions.pending >= FLUSH_AT and not authorizer.decisions.flushing:
        task = asyncio.create_task(
            run_in_threadpool(authorizer.decisions.flush, state.write_sessions)
        )
        _flushing.add(task)
        task.add_done_callback(_flushed)


def _flushed(task: asyncio.Task[Any]) -> None:
    _flushing.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.error(
            "logging authorize decisions failed; the next flush retries", exc_info=task.exception()
        )
