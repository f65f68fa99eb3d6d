"""The FastAPI application: start jobs, read them, list workflows, health.

Endpoints are plain `def` functions: FastAPI runs them in its thread pool, which suits the
synchronous psycopg pool the whole engine shares.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Annotated, Any
from uuid import UUID

from fastapi import BackgroundTasks, Depends, FastAPI, Header, Query, Request, Response
from fastapi.responses import JSONResponse

from api.auth import AuthError, TokenVerifier
from api.bodylimit import BodySizeLimitMiddleware
from api.cursor import decode_cursor, encode_cursor
from api.errors import install_error_handlers
from api.metrics import install_metrics
from api.models import (
    ErrorBody,
    Health,
    Job,
    JobList,
    JobStatusName,
    StartRequest,
    StartResponse,
    WorkflowList,
    WorkflowSummary,
)
from api.operator import operator_router
from api.ratelimit import RateLimiter, ReadPrincipal, StartPrincipal, limit_anonymous
from api.trigger import PrefectTrigger, Trigger
from engine.db.store import JobStore, UnknownUserError
from engine.definitions.inputs import input_problems
from engine.errors import InputValidationError
from engine.settings import Settings, get_settings

logger = logging.getLogger("supaflow.api")

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (401, 404, 409, 413, 422, 429)
}


def store_dep(request: Request) -> JobStore:
    """The app's job store (created at startup)."""
    return request.app.state.store  # type: ignore[no-any-return]


StoreParam = Annotated[JobStore, Depends(store_dep)]


def _dispatch(trigger: Trigger, store: JobStore, job_id: str) -> None:
    """Create the job's flow run and record its id (None: Prefect unreachable, stays pending)."""
    flow_run_id = trigger.start(job_id)
    if flow_run_id is not None:
        store.set_flow_run(job_id, flow_run_id)


class Dispatcher:
    """Creates flow runs on a small thread pool of its own, never on the request threads.

    When Prefect is slow, waiting dispatches would otherwise hold the threads that reads
    need. Past `max_backlog` waiting jobs, new ones are left `pending` for the maintenance
    flow instead of queueing without bound.
    """

    def __init__(self, workers: int = 4, max_backlog: int = 200) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dispatch")
        self._slots = threading.BoundedSemaphore(max_backlog)

    async def dispatch(self, trigger: Trigger, store: JobStore, job_id: str) -> None:
        """Create the job's flow run off the request thread pool (or leave it to maintenance)."""
        if not self._slots.acquire(blocking=False):
            logger.warning(
                "dispatch backlog full; the job stays pending for maintenance",
                extra={"job_id": job_id},
            )
            return
        try:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._executor, _dispatch, trigger, store, job_id)
        finally:
            self._slots.release()

    def close(self) -> None:
        """Finish queued dispatches and stop the threads."""
        self._executor.shutdown(wait=True)


def request_hash(body: StartRequest) -> str:
    """A stable fingerprint of a start request, to tell idempotent replays from conflicts."""
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def create_app(
    settings: Settings | None = None,
    *,
    store: JobStore | None = None,
    trigger: Trigger | None = None,
    verifier: TokenVerifier | None = None,
) -> FastAPI:
    """Build the app. Parts not given are created from settings when the app starts."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        from engine.db.connection import shared_store

        app.state.store = store or shared_store(settings)
        app.state.trigger = trigger or PrefectTrigger(settings.prefect_deployment)
        app.state.dispatcher = Dispatcher()
        yield
        app.state.dispatcher.close()
        if trigger is None and isinstance(app.state.trigger, PrefectTrigger):
            app.state.trigger.close()

    app = FastAPI(
        title="Supaflow",
        version="0.1.0",
        summary="Start multi-step workflow jobs and follow them to completion.",
        lifespan=lifespan,
        responses=ERROR_RESPONSES,
    )
    app.state.settings = settings
    app.state.verifier = verifier or TokenVerifier(settings)
    app.state.limiter = RateLimiter.from_settings(settings)
    install_error_handlers(app)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.api_max_body_bytes)
    # Timing is added last so it is outermost: it also measures 413s and auth failures.
    install_metrics(app, settings)
    app.include_router(operator_router)

    @app.post(
        "/workflows/start",
        response_model=StartResponse,
        status_code=201,
        summary="Start a workflow job",
        tags=["jobs"],
    )
    def start_workflow(
        body: StartRequest,
        principal: StartPrincipal,
        store: StoreParam,
        request: Request,
        response: Response,
        background: BackgroundTasks,
        idempotency_key: Annotated[
            str | None,
            Header(
                alias="Idempotency-Key",
                min_length=1,
                max_length=255,
                description="Replaying the same key and body returns the same job.",
            ),
        ] = None,
    ) -> StartResponse:
        """Record a `pending` job for the caller and ask Prefect to run it; does not wait."""
        workflow = store.get_workflow(body.workflow_id)
        schema = (workflow["definition"] or {}).get("input_schema") or {"type": "object"}
        problems = input_problems(schema, body.input_data)
        if problems:
            raise InputValidationError(
                "input_data does not match the workflow's input_schema",
                details=[
                    {
                        "pointer": "/input_data" + (p.location if p.location != "/" else ""),
                        "message": p.message,
                    }
                    for p in problems
                ],
            )
        try:
            created = store.create_job(
                user_id=principal.user_id,
                workflow_id=body.workflow_id,
                input_data=body.input_data,
                idempotency_key=idempotency_key,
                request_hash=request_hash(body),
            )
        except UnknownUserError:
            # A valid signature for a user that no longer exists: the token is revoked.
            raise AuthError("token subject is not a known user") from None
        if created.created:
            # The row is committed; the flow run is created after the answer is sent, so the
            # caller never waits on Prefect. If this process dies first, the job is still
            # pending without a flow run and the maintenance flow dispatches it.
            background.add_task(
                request.app.state.dispatcher.dispatch,
                request.app.state.trigger,
                store,
                created.id,
            )
        else:
            response.status_code = 200
        response.headers["Location"] = f"/jobs/{created.id}"
        return StartResponse(
            job_id=UUID(created.id), status=created.status, created_at=created.created_at
        )

    @app.get(
        "/jobs/{job_id}",
        response_model=Job,
        summary="Get one of your jobs",
        tags=["jobs"],
    )
    def get_job(job_id: UUID, principal: ReadPrincipal, store: StoreParam) -> Job:
        """The full job; another user's job and a missing one are both 404."""
        return Job.from_row(store.get_job_for_user(principal.claims, str(job_id)))

    @app.get(
        "/jobs",
        response_model=JobList,
        summary="List your jobs, newest first",
        tags=["jobs"],
    )
    def list_jobs(
        principal: ReadPrincipal,
        store: StoreParam,
        limit_: Annotated[int, Query(alias="limit", ge=1, le=100)] = 20,
        cursor: Annotated[str | None, Query(max_length=200)] = None,
        status: Annotated[JobStatusName | None, Query()] = None,
        workflow_id: Annotated[str | None, Query(max_length=200)] = None,
    ) -> JobList:
        """A page of the caller's jobs; filters by status and workflow_id."""
        rows = store.list_jobs_for_user(
            principal.claims,
            limit=limit_ + 1,
            status=status,
            workflow_id=workflow_id,
            cursor=decode_cursor(cursor) if cursor else None,
        )
        page = rows[:limit_]
        next_cursor = (
            encode_cursor(page[-1]["created_at"], str(page[-1]["id"]))
            if len(rows) > limit_
            else None
        )
        return JobList(jobs=[Job.from_row(r) for r in page], next_cursor=next_cursor)

    @app.get(
        "/workflows",
        response_model=WorkflowList,
        summary="Workflows you can start",
        tags=["workflows"],
    )
    def list_workflows(principal: ReadPrincipal, store: StoreParam) -> WorkflowList:
        """Every workflow with the input schema its input_data must satisfy."""
        rows = store.list_workflows_for_user(principal.claims)
        return WorkflowList(
            workflows=[
                WorkflowSummary(
                    id=r["id"], description=r["description"], input_schema=r["input_schema"] or {}
                )
                for r in rows
            ]
        )

    if settings.local_auth:
        from engine.security.local_keys import jwks, load_or_create_signing_key

        local_jwks = jwks(load_or_create_signing_key(settings.data_dir))

        @app.get(
            "/auth/v1/.well-known/jwks.json",
            include_in_schema=False,
            dependencies=[Depends(limit_anonymous)],
        )
        def local_jwks_document() -> dict[str, Any]:
            """Local stack only: the public key that signs local development tokens."""
            return local_jwks

    @app.get(
        "/health",
        response_model=Health,
        tags=["operations"],
        summary="Reachability",
        dependencies=[Depends(limit_anonymous)],
    )
    def health(request: Request, store: StoreParam) -> JSONResponse:
        """Database and Prefect reachability; 503 when the database is down."""
        try:
            with store.pool.connection(timeout=2) as conn:
                conn.execute("select 1")
            db_ok = True
        except Exception:
            db_ok = False
        prefect_ok = bool(request.app.state.trigger.healthy())
        status = "ok" if db_ok and prefect_ok else ("degraded" if db_ok else "down")
        body = Health(status=status, database=db_ok, prefect=prefect_ok)
        return JSONResponse(body.model_dump(), status_code=200 if db_ok else 503)

    return app
