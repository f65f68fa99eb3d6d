"""Every FastAPI dependency the routes use: app parts, who the caller is, and their limits.

Identity is checked in one place, `authenticated(group)`: a user route declares
`principal: ReadPrincipal` (or `StartPrincipal`) and gets the bearer-token check, the "anon"
budget for failed attempts and its group's per-user limit together. Public routes declare
`dependencies=[Depends(limit_anonymous)]`; operator routes `Depends(require_operator)`.
tests/api/test_app_routes.py fails for a route that declares none of these.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials
from prometheus_client import CollectorRegistry
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.auth import AuthError, Principal, TokenVerifier, bearer_token, openapi_bearer_scheme
from api.dispatcher import Dispatcher
from api.ratelimit import GROUPS, RateLimiter, client_ip, raise_if_limited
from engine.db.store import JobStore
from engine.dispatch import RunStarter
from engine.settings import Settings

# --- the app's parts (created by create_app and its lifespan) ---------------------------------


def app_settings(request: Request) -> Settings:
    """The settings the app was built with."""
    return request.app.state.settings  # type: ignore[no-any-return]


def job_store(request: Request) -> JobStore:
    """The app's job store (created at startup)."""
    return request.app.state.store  # type: ignore[no-any-return]


def run_starter(request: Request) -> RunStarter:
    """The app's flow-run starter (created at startup)."""
    return request.app.state.starter  # type: ignore[no-any-return]


def dispatcher(request: Request) -> Dispatcher:
    """The app's dispatcher, which creates flow runs after the answer (created at startup)."""
    return request.app.state.dispatcher  # type: ignore[no-any-return]


def metrics_registry(request: Request) -> CollectorRegistry:
    """The app's own Prometheus registry (api.metrics.install_metrics)."""
    return request.app.state.metrics_registry  # type: ignore[no-any-return]


def token_verifier(request: Request) -> TokenVerifier:
    """The `TokenVerifier` the application keeps in `app.state.verifier`."""
    verifier = getattr(request.app.state, "verifier", None)
    if not isinstance(verifier, TokenVerifier):
        raise RuntimeError("app.state.verifier is not set to a TokenVerifier")
    return verifier


def rate_limiter(request: Request) -> RateLimiter:
    """The `RateLimiter` the application keeps in `app.state.limiter`."""
    limiter = getattr(request.app.state, "limiter", None)
    if not isinstance(limiter, RateLimiter):
        raise RuntimeError("app.state.limiter is not set to a RateLimiter")
    return limiter


SettingsDep = Annotated[Settings, Depends(app_settings)]
StoreDep = Annotated[JobStore, Depends(job_store)]
StarterDep = Annotated[RunStarter, Depends(run_starter)]
DispatcherDep = Annotated[Dispatcher, Depends(dispatcher)]
MetricsRegistryDep = Annotated[CollectorRegistry, Depends(metrics_registry)]

# --- users: the one identity check ------------------------------------------------------------


def limit_anonymous(request: Request) -> None:
    """Dependency for public routes: count the request against "anon" for its client IP."""
    raise_if_limited(rate_limiter(request).hit("anon", client_ip(request)))


def authenticated(group: str) -> Callable[..., Principal]:
    """Build a dependency that authenticates the request and applies `group`'s per-user limit.

    Order matters: an IP that has spent its "anon" budget on failed or missing credentials gets
    429 before its token is even parsed (so it cannot make us fetch the JWKS over and over); a
    failed authentication counts against that budget; a verified user is then limited per user
    id in `group`, whatever address they come from. Sync on purpose: a JWKS refetch blocks,
    and FastAPI runs sync dependencies off the event loop. The principal is also stored in
    `request.state.principal` for logging and metrics.
    """
    if group not in GROUPS - {"anon"}:
        raise ValueError(f"{group!r} is not a per-user rate-limit group")

    def dependency(
        request: Request,
        _declared: Annotated[HTTPAuthorizationCredentials | None, Security(openapi_bearer_scheme)],
    ) -> Principal:
        """The verified caller of `request`, once its limits allow the request."""
        limiter = rate_limiter(request)
        ip = client_ip(request)
        raise_if_limited(limiter.peek("anon", ip))
        try:
            token = bearer_token(request.headers.get("authorization"))
            principal = token_verifier(request).verify(token)
        except AuthError:
            raise_if_limited(limiter.hit("anon", ip))
            raise
        request.state.principal = principal
        raise_if_limited(limiter.hit(group, principal.user_id))
        return principal

    # Distinct names keep FastAPI's dependency cache and the OpenAPI document tidy.
    dependency.__name__ = f"authenticated_{group}"
    return dependency


#: The caller of a route that starts work ("start" limit) or reads ("read" limit).
StartPrincipal = Annotated[Principal, Depends(authenticated("start"))]
ReadPrincipal = Annotated[Principal, Depends(authenticated("read"))]

# --- operators: the METRICS_TOKEN bearer token ------------------------------------------------


def configured_token(request: Request) -> str | None:
    """The operator token of the app's settings (METRICS_TOKEN), or None when unset."""
    settings = getattr(request.app.state, "settings", None)
    secret = getattr(settings, "metrics_token", None)
    if secret is None:
        return None
    value = secret.get_secret_value() if hasattr(secret, "get_secret_value") else str(secret)
    return value or None


def check_operator_token(request: Request, expected: str) -> None:
    """Raise AuthError (401 with a Bearer challenge) unless the request carries `expected`."""
    token = bearer_token(request.headers.get("authorization"))
    if not hmac.compare_digest(token.encode("utf-8"), expected.encode("utf-8")):
        raise AuthError("invalid operator token")


def require_operator(request: Request) -> None:
    """Dependency: the caller holds the operator token; 403 when none is configured.

    User JWTs are not accepted: operator endpoints show every user's jobs' trouble.
    """
    expected = configured_token(request)
    if expected is None:
        raise StarletteHTTPException(
            403, "operator endpoints are disabled: set METRICS_TOKEN to enable them"
        )
    check_operator_token(request, expected)


def require_metrics_token(request: Request) -> None:
    """Dependency: when METRICS_TOKEN is set, the request must carry it as a Bearer token."""
    expected = configured_token(request)
    if expected is not None:
        check_operator_token(request, expected)
