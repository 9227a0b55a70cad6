"""HTTP routes of the model registry and the subject impact report."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query

from ledger.access import visibility
from ledger.http.deps import SessionDep, StateDep
from ledger.http.idempotency import run_once
from ledger.http.security import Pipeline, PipelineOrOversight, RegistrarOrOversight
from ledger.registry import service
from ledger.registry.service import ModelCreate, ModelPublic

router = APIRouter(tags=["models"])


@router.post("/v1/models", status_code=201, response_model=ModelPublic)
def register_model(
    body: ModelCreate,
    session: SessionDep,
    state: StateDep,
    caller: Pipeline,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> ModelPublic:
    """Register a model version trained, validated or fine-tuned under your grants."""
    return run_once(
        session,
        principal_id=caller.id,
        key=idempotency_key,
        route="POST /v1/models",
        payload=body.model_dump(mode="json"),
        model=ModelPublic,
        action=lambda: service.describe(
            session, state.policies, service.register(session, body, pipeline_id=caller.id)
        ),
    )


@router.get("/v1/models", response_model=list[ModelPublic])
def list_models(
    session: SessionDep,
    state: StateDep,
    caller: PipelineOrOversight,
    flagged: Annotated[bool | None, Query(description="only models that lost consent")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 200,
) -> list[ModelPublic]:
    """Registered models, newest first, each with its lineage and ``flagged`` state;
    pipelines see the models they registered."""
    mine = service.list_models(session, limit, registered_by=visibility.owner_filter(caller))
    out = [service.describe(session, state.policies, m) for m in mine]
    return [m for m in out if flagged is None or m.flagged == flagged]


@router.get("/v1/models/{model_id}", response_model=ModelPublic)
def get_model(
    model_id: str, session: SessionDep, state: StateDep, caller: PipelineOrOversight
) -> ModelPublic:
    """A model's lineage: grants → requests → datasets, policy hash and ``as_of`` of each
    decision, and how many of its images no longer have consent. Pipelines see their own."""
    record = service.get(session, model_id)
    visibility.ensure_visible(
        caller, record.registered_by, "this model was registered by another pipeline"
    )
    return service.describe(session, state.policies, record)


@router.get("/v1/subjects/{subject_id}/impact")
def impact(
    subject_id: str, session: SessionDep, state: StateDep, caller: RegistrarOrOversight
) -> dict[str, Any]:
    """Which grants, pipelines and models used this subject's images, and how many of
    them are blocked now (after a withdrawal or erasure)."""
    return service.impact(session, state.policies, subject_id)
