"""The FastAPI application, wiring only: parts, middleware, error handlers and routers.

Endpoints live in api/routes/ (one module per group) and take everything they need through
api/deps.py. They are plain `def` functions: FastAPI runs them in its thread pool, which suits
the synchronous psycopg pool the whole engine shares.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI

from api.auth import TokenVerifier
from api.bodylimit import BodySizeLimitMiddleware
from api.client_address import trusted_networks
from api.errors import install_error_handlers
from api.identity import store_directory
from api.metrics import install_metrics
from api.probe import ProbeCache
from api.ratelimit import RateLimiter, RateLimitScopeMiddleware
from api.responses import ALWAYS, error_responses
from api.routes import (
    approvals,
    docs,
    health,
    job_control,
    jobs,
    metrics,
    operator,
    schedules,
    workflows,
)
from api.routes.local_auth import local_auth_router
from api.strict_input import check_parameters
from api.unhandled import UnhandledErrorMiddleware
from engine.admission import PendingDispatcher
from engine.db.store import JobStore
from engine.dispatch import RunStarter
from engine.schedule_sync import PrefectSchedules
from engine.settings import Settings, get_settings


def routers(settings: Settings) -> list[APIRouter]:
    """Every router the app serves, in matching order (the local JWKS only with LOCAL_AUTH)."""
    served = [
        metrics.router,
        operator.router,
        workflows.router,
        jobs.router,
        job_control.router,
        schedules.router,
        approvals.router,
        docs.router,
    ]
    if settings.local_auth:
        served.append(local_auth_router(settings.data_dir))
    served.append(health.router)
    return served


def _lifespan(
    settings: Settings,
    store: JobStore | None,
    starter: RunStarter | None,
    prefect_schedules: PrefectSchedules | None = None,
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Open the store, the run starter, the schedules' Prefect side and the admission
    dispatcher; close what the app opened (a given part is the caller's)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from engine.db.connection import shared_store

        app.state.store = store or shared_store(settings)
        # Fails fast: a job Prefect cannot take now stays `pending`, and admission retries.
        app.state.starter = starter or RunStarter.own_client(
            settings.prefect_deployment, fail_fast=True
        )
        # Fails fast too: a schedule Prefect cannot take now is synced by maintenance.
        app.state.prefect_schedules = prefect_schedules or PrefectSchedules.own_client(
            settings.schedule_deployment, fail_fast=True
        )
        admission = None
        if settings.api_admission:
            admission = PendingDispatcher.from_settings(
                app.state.store, app.state.starter.try_start, settings
            )
            admission.start()
        app.state.admission = admission
        yield
        if admission is not None:
            admission.stop()
        if prefect_schedules is None:
            app.state.prefect_schedules.close()
        if starter is None:
            app.state.starter.close()

    return lifespan


def create_app(
    settings: Settings | None = None,
    *,
    store: JobStore | None = None,
    starter: RunStarter | None = None,
    verifier: TokenVerifier | None = None,
    prefect_schedules: PrefectSchedules | None = None,
) -> FastAPI:
    """Build the app. Parts not given are created from settings when the app starts."""
    settings = settings or get_settings()

    app = FastAPI(
        title="Supaflow",
        version="0.1.0",
        summary="Start multi-step workflow jobs and follow them to completion.",
        lifespan=_lifespan(settings, store, starter, prefect_schedules),
        # FastAPI's pages load their assets from a CDN; api/routes/docs.py serves its own.
        docs_url=None,
        redoc_url=None,
        responses=error_responses(*ALWAYS),
        # The input policy's parameter check runs first on every route (api/strict_input.py).
        dependencies=[Depends(check_parameters)],
    )
    app.state.settings = settings
    app.state.verifier = verifier or TokenVerifier(settings)
    app.state.limiter = RateLimiter.from_settings(settings)
    app.state.users = store_directory(
        lambda: app.state.store, cache_seconds=settings.auth_user_cache_seconds
    )
    app.state.health_probe = ProbeCache()
    trusted_networks(settings.trusted_proxies)  # a malformed TRUSTED_PROXIES fails here
    install_error_handlers(app)
    # Innermost: an unhandled exception becomes the JSON 500 here and goes no further, so the
    # server keeps the connection open (api/unhandled.py says why that matters).
    app.add_middleware(UnhandledErrorMiddleware)
    # X-RateLimit-Scope on every answer a limit was applied to, errors included.
    app.add_middleware(RateLimitScopeMiddleware)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.api_max_body_bytes)
    # Timing is added last so it is outermost: it also measures 413s and auth failures.
    install_metrics(app)
    for router in routers(settings):
        app.include_router(router)
    return app
