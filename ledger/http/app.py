"""The HTTP API: state from ``ledger.wiring``, routers, error mapping, background schedules.

Front doors served by the same process (the console) mount themselves through
``create_app(..., mounts=...)``; ``ledger.server`` puts the two together.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress

from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse

from ledger import __version__, wiring
from ledger.config import Settings, get_settings
from ledger.db import ping
from ledger.http import openapi
from ledger.http.middleware import BodyLimit, InputGuard
from ledger.http.problems import install_error_handlers
from ledger.http.request_log import RequestLog
from ledger.policy.service import activate
from ledger.provenance import checkpoints, merkle_workers
from ledger.wiring import AppState

log = logging.getLogger("ledger.http")

DESCRIPTION = """
Records which patients consented to which AI uses, checks dataset access requests
against those consents with Cedar policies, signs each decision, releases only
de-identified images under a valid grant, and keeps a tamper-evident Merkle log.

Authenticate with `Authorization: Bearer <api key>`. Errors are RFC 9457
`application/problem+json`. Lists use cursor pagination (`cursor`, `limit`).
"""


def create_app(
    settings: Settings | None = None,
    *,
    check_db: bool = True,
    mounts: Sequence[Callable[[FastAPI], None]] = (),
) -> FastAPI:
    """Build the API; refuses to start on an un-migrated database or a home without keys."""
    settings = settings or get_settings()
    state = wiring.build(settings, check_db=check_db)
    engine = state.engine
    if check_db:
        with state.write_sessions() as session:
            if activate(session, state.policies, actor=None):
                log.info("policy set %s is now in force", state.policies.hash[:12])
            session.commit()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if settings.hash_worker:
            merkle_workers.start()
        tasks = [asyncio.create_task(_decision_log_schedule(state))]
        if settings.checkpoint_interval > 0:
            tasks.append(asyncio.create_task(_checkpoint_schedule(state)))
        # What start-up built (the app, routes, models, policy set, Cedar schema) lives as
        # long as the process: move it out of the collector's reach, so a full collection
        # under load walks only what requests allocate (those walks were p99 stalls).
        gc.collect()
        gc.freeze()
        yield
        for task in tasks:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        flush_decisions(state)
        state.authorizer.close()
        merkle_workers.stop()
        engine.dispose()

    app = FastAPI(
        title="ledger",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served offline by http/openapi.py
        redoc_url=None,
    )
    app.state.ledger = state
    install_error_handlers(app)
    app.add_middleware(InputGuard)  # inside BodyLimit (added after it), which bounds its reads
    app.add_middleware(
        BodyLimit,
        json_limit=settings.max_json_bytes,
        upload_limit=settings.max_upload_bytes,
    )
    app.add_middleware(RequestLog)  # outside the limits, so a 413 gets its line too
    openapi.install(app)
    _mount(app)
    for mount in mounts:
        mount(app)

    @app.get("/healthz", tags=["meta"])
    def healthz() -> JSONResponse:
        """Liveness and database reachability, for load balancers."""
        ok = ping(engine)
        return JSONResponse(
            {"status": "ok" if ok else "degraded", "database": ok, "version": __version__},
            status_code=200 if ok else 503,
        )

    return app


def checkpoint_if_stale(state: AppState) -> None:
    """Sign a checkpoint when entries were appended since the last one."""
    with state.write_sessions() as session:
        if checkpoints.is_stale(session):
            record = checkpoints.create(
                session, state.log_tree, state.keys, state.settings.log_origin
            )
            session.commit()
            log.info("signed log checkpoint at size %d", record.size)


async def _checkpoint_schedule(state: AppState) -> None:
    """Checkpoints on a schedule bound how much history could be rewritten unnoticed."""
    while True:
        try:
            await asyncio.to_thread(checkpoint_if_stale, state)
        except Exception:
            log.exception("scheduled checkpoint failed; will retry")
        await asyncio.sleep(state.settings.checkpoint_interval)


def flush_decisions(state: AppState) -> None:
    """Log the authorize decisions taken since the last flush (one entry per batch)."""
    state.authorizer.decisions.flush(state.write_sessions)


async def _decision_log_schedule(state: AppState) -> None:
    while True:
        await asyncio.sleep(state.settings.decision_log_interval)
        try:
            await asyncio.to_thread(flush_decisions, state)
        except Exception:
            log.exception("logging authorize decisions failed; will retry")


def routers() -> list[APIRouter]:
    """Every router of the API, in mounting order (tests enumerate routes from here)."""
    from ledger.http.routers import (
        access_requests,
        audit,
        consents,
        dicomweb,
        fhir,
        grants,
        images,
        keys,
        log,
        model_registry,
        principals,
    )

    return [
        principals.router,
        consents.router,
        fhir.router,
        images.router,
        access_requests.router,
        grants.router,
        dicomweb.router,
        model_registry.router,
        log.router,
        audit.router,
        keys.router,
    ]


def _mount(app: FastAPI) -> None:
    for router in routers():
        app.include_router(router)
