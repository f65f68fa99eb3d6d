"""Every FastAPI dependency the routes use: app parts, who the caller is, and their limits.

Identity is checked in one place, `authenticated(group)`: a user route declares
`principal: ReadPrincipal` (or `StartPrincipal`) and gets the bearer-token check, the check
that the token's user still exists, the "anon" budget for failed attempts and its group's
per-user limit together. Public routes declare `dependencies=[Depends(limit_anonymous)]`;
operator routes `Depends(require_operator)`; the health probe `Depends(unlimited_probe)`.
tests/api/test_app_routes.py fails for a route that declares none of these.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Annotated, TypeVar

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials
from prometheus_client import CollectorRegistry
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.auth import AuthError, Principal, TokenVerifier, bearer_token, openapi_bearer_scheme
from api.client_address import client_ip
from api.identity import UserDirectory
from api.probe import ProbeCache
from api.ratelimit import (
    PER_USER_GROUPS,
    SCOPE_STATE_KEY,
    RateLimiter,
    RateLimitResult,
    raise_if_limited,
)
from engine.db.store import JobStore
from engine.dispatch import RunStarter
from engine.settings import Settings

# --- the app's parts (created by create_app and its lifespan) ---------------------------------

Part = TypeVar("Part")


def app_settings(request: Request) -> Settings:
    """The settings the app was built with."""
    return request.app.state.settings  # type: ignore[no-any-return]


def job_store(request: Request) -> JobStore:
    """The app's job store (created at startup)."""
    return request.app.state.store  # type: ignore[no-any-return]


def run_starter(request: Request) -> RunStarter:
    """The app's flow-run starter (created at startup)."""
    return request.app.state.starter  # type: ignore[no-any-return]


def metrics_registry(request: Request) -> CollectorRegistry:
    """The app's own Prometheus registry (api.metrics.install_metrics)."""
    return request.app.state.metrics_registry  # type: ignore[no-any-return]


def _checked_part(request: Request, name: str, kind: type[Part]) -> Part:
    """`app.state.<name>`, which must be a `kind` (a hand-built app that forgot it fails
    loudly instead of skipping a security check)."""
    part = getattr(request.app.state, name, None)
    if not isinstance(part, kind):
        raise RuntimeError(f"app.state.{name} is not set to a {kind.__name__}")
    return part


def token_verifier(request: Request) -> TokenVerifier:
    """The `TokenVerifier` the application keeps in `app.state.verifier`."""
    return _checked_part(request, "verifier", TokenVerifier)


def rate_limiter(request: Request) -> RateLimiter:
    """The `RateLimiter` the application keeps in `app.state.limiter`."""
    return _checked_part(request, "limiter", RateLimiter)


def user_directory(request: Request) -> UserDirectory:
    """The `UserDirectory` (is the token's user current?) kept in `app.state.users`."""
    return _checked_part(request, "users", UserDirectory)


def health_probe(request: Request) -> ProbeCache:
    """The health answer shared by every probe (`app.state.health_probe`)."""
    return request.app.state.health_probe  # type: ignore[no-any-return]


SettingsDep = Annotated[Settings, Depends(app_settings)]
StoreDep = Annotated[JobStore, Depends(job_store)]
StarterDep = Annotated[RunStarter, Depends(run_starter)]
MetricsRegistryDep = Annotated[CollectorRegistry, Depends(metrics_registry)]
HealthProbeDep = Annotated[ProbeCache, Depends(health_probe)]
RateLimiterDep = Annotated[RateLimiter, Depends(rate_limiter)]

# --- users: the one identity check ------------------------------------------------------------


def apply_limit(request: Request, result: RateLimitResult) -> None:
    """Enforce one limiter answer: note its scope for the `X-RateLimit-Scope` header
    (api.ratelimit.RateLimitScopeMiddleware), then raise `RateLimitedError` if it refuses.

    Every limit a dependency applies goes through here, so every answer it shaped says
    whether the count was shared by the replicas or this process's own.
    """
    setattr(request.state, SCOPE_STATE_KEY, result.scope)
    raise_if_limited(result)


def limit_anonymous(request: Request) -> None:
    """Dependency for public routes: count the request against "anon" for its client IP."""
    apply_limit(request, rate_limiter(request).hit("anon", client_ip(request)))


def unlimited_probe() -> None:
    """Dependency (a declaration) of a public route that is deliberately not rate limited.

    Only the health probe: a load balancer must never be refused for its own probing rate or
    a neighbour's, and the probe answers from `api.probe.ProbeCache`, so a flood costs the
    database and Prefect nothing more than one probe a second.
    """


def verified_user(request: Request) -> Principal:
    """The caller named by the request's bearer token, if that user still exists.

    `AuthError` (401) for a missing, bad or expired token and for a validly signed token
    whose user was deleted or banned (`api.identity`), so every user route answers it alike.
    """
    principal = token_verifier(request).verify(bearer_token(request.headers.get("authorization")))
    if not user_directory(request).is_known(principal.user_id):
        raise AuthError("token subject is not a known user")
    return principal


def authenticated(group: str) -> Callable[..., Principal]:
    """Build a dependency that authenticates the request and applies `group`'s per-user limit.

    The token is checked first, always: a request that fails to authenticate spends its
    address's "anon" budget (401, or 429 once spent), while a verified user is limited only
    per user id in `group`, so a noisy client behind a shared address never locks out the
    valid users there. (Checking every token costs no JWKS fetches: an unknown key id
    refetches at most once per cooldown, api.auth.TokenVerifier.) Sync on purpose: a JWKS
    refetch and the user lookup block, and FastAPI runs sync dependencies off the event loop.
    The principal is also stored in `request.state.principal` for logging and metrics.
    """
    if group not in PER_USER_GROUPS:
        raise ValueError(f"{group!r} is not a per-user rate-limit group")

    def dependency(
        request: Request,
        _declared: Annotated[HTTPAuthorizationCredentials | None, Security(openapi_bearer_scheme)],
    ) -> Principal:
        """The verified caller of `request`, once its limits allow the request."""
        limiter = rate_limiter(request)
        try:
            principal = verified_user(request)
        except AuthError:
            apply_limit(request, limiter.hit("anon", client_ip(request)))
            raise
        request.state.principal = principal
        apply_limit(request, limiter.hit(group, principal.user_id))
        return principal

    # Distinct names keep FastAPI's dependency cache and the OpenAPI document tidy.
    dependency.__name__ = f"authenticated_{group}"
    return dependency


#: The caller of a route that starts work ("start" limit) or reads ("read" limit).
StartPrincipal = Annotated[Principal, Depends(authenticated("start"))]
ReadPrincipal = Annotated[Principal, Depends(authenticated("read"))]

# --- operators: the METRICS_TOKEN bearer token ------------------------------------------------

#: The answer of every operator endpoint while METRICS_TOKEN is unset.
OPERATOR_DISABLED = (
    "operator endpoints (/metrics, /operator/*) are disabled: set METRICS_TOKEN to enable "
    "them, and send it as 'Authorization: Bearer <METRICS_TOKEN>'"
)


def configured_token(request: Request) -> str | None:
    """The operator token of the app's settings (METRICS_TOKEN), or None when unset."""
    settings = getattr(request.app.state, "settings", None)
    secret = getattr(settings, "metrics_token", None)
    if secret is None:
        return None
    value = secret.get_secret_value() if hasattr(secret, "get_secret_value") else str(secret)
    return value or None


def check_operator_token(request: Request, expected: str) -> None:
    """Raise AuthError (401 with a Bearer challenge) unless the request carries `expected`.

    Constant-time: both sides are hashed to one length first, since `hmac.compare_digest`
    returns early, and so reveals the token's length, when the lengths differ.
    """
    token = bearer_token(request.headers.get("authorization"))
    digest = hashlib.sha256(token.encode("utf-8")).digest()
    if not hmac.compare_digest(digest, hashlib.sha256(expected.encode("utf-8")).digest()):
        raise AuthError("invalid operator token")


def require_operator(request: Request) -> None:
    """Dependency: the caller holds the operator token; 403 when none is configured.

    User JWTs are not accepted: operator endpoints show every tenant's workflows, counts and
    failures. A wrong token spends the address's "operator" budget; while it is spent, every
    operator request from that address gets 429, the right token too, so a guesser cannot
    tell a hit from a miss. The comparison is constant-time (`check_operator_token`).
    """
    expected = configured_token(request)
    if expected is None:
        raise StarletteHTTPException(403, OPERATOR_DISABLED)
    limiter = rate_limiter(request)
    address = client_ip(request)
    apply_limit(request, limiter.peek("operator", address))
    try:
        check_operator_token(request, expected)
    except AuthError:
        apply_limit(request, limiter.hit("operator", address))
        raise
