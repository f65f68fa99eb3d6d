"""Rate limits per endpoint group: parsing, the limiter in memory and in a real Redis, and the
429 answers of a small app using the dependencies. (Redis failing: test_ratelimit_fallback.py.)"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import limits
import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from tokens import JwksEndpoint, SigningKey, bearer, supabase_claims

from api.auth import TokenVerifier
from api.deps import ReadPrincipal, StartPrincipal, authenticated, limit_anonymous
from api.errors import install_error_handlers
from api.identity import UserDirectory
from api.ratelimit import (
    DEFAULT_RATE_LIMITS,
    SCOPE_HEADER,
    RateLimitedError,
    RateLimiter,
    RateLimitResult,
    RateLimitScopeMiddleware,
    RateLimitStatus,
    effective_rate_limits,
    parse_rate_limits,
    raise_if_limited,
    retry_after,
)
from engine.errors import ConfigurationError
from engine.settings import Settings

REDIS_TEST_URL = "redis://127.0.0.1:6379/15"
ALICE = "0a6c3b0e-0000-4000-8000-00000000a11c"
BOB = "0b0b0b0b-0000-4000-8000-0000000000b0"


# --- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("start=60/minute;read=600/minute;anon=30/minute", {"start": 60, "read": 600, "anon": 30}),
        (" start = 5 per second ; ", {"start": 5}),
        ("read=10/hour;", {"read": 10}),
        ("", {}),
    ],
)
def test_parse_rate_limits(spec: str, expected: dict[str, int]) -> None:
    """Valid configurations give one limit per named group."""
    parsed = parse_rate_limits(spec)
    assert {group: item.amount for group, item in parsed.items()} == expected


@pytest.mark.parametrize(
    ("spec", "complaint"),
    [
        ("stat=60/minute", "unknown group 'stat'"),
        ("start=60/minute;start=5/second", "twice"),
        ("start", "is not 'group=limit'"),
        ("=60/minute", "is not 'group=limit'"),
        ("start=", "is not 'group=limit'"),
        ("start=lots", "is not valid"),
        ("start=1/second,10/minute", "more than one limit"),
    ],
)
def test_parse_rate_limits_rejects_bad_config(spec: str, complaint: str) -> None:
    """Typos in RATE_LIMITS fail at startup with a message naming the problem."""
    with pytest.raises(ConfigurationError, match=complaint):
        parse_rate_limits(spec)


def test_groups_not_named_keep_their_defaults() -> None:
    """Naming one group overrides only that group."""
    effective = effective_rate_limits("start=5/minute")
    defaults = parse_rate_limits(DEFAULT_RATE_LIMITS)
    assert effective["start"].amount == 5
    assert effective["read"] == defaults["read"]
    assert effective["anon"] == defaults["anon"]


@pytest.mark.parametrize(
    ("reset_time", "now", "expected"),
    [(100.0, 40.0, 60), (100.0, 99.2, 1), (100.0, 100.0, 1), (100.0, 120.0, 1), (100.5, 40, 61)],
)
def test_retry_after_is_whole_seconds_at_least_one(
    reset_time: float, now: float, expected: int
) -> None:
    """Retry-After rounds up and never says 0."""
    assert retry_after(reset_time, now) == expected


def test_check_raises_once_spent() -> None:
    """`check` counts like `hit` and raises RateLimitedError for the request past the limit."""
    limiter = RateLimiter(effective_rate_limits("start=1/minute"))
    assert limiter.check("start", ALICE).allowed
    with pytest.raises(RateLimitedError) as caught:
        limiter.check("start", ALICE)
    assert caught.value.retry_after_seconds >= 1


def test_raise_if_limited() -> None:
    """A refused result becomes RateLimitedError carrying its retry delay; an allowed one not."""
    raise_if_limited(RateLimitResult(True, 0, 5, 4, "local"))
    with pytest.raises(RateLimitedError) as caught:
        raise_if_limited(RateLimitResult(False, 42, 5, 0, "shared"))
    assert caught.value.retry_after_seconds == 42
    assert caught.value.code == "rate_limited"
    assert caught.value.details == {"retry_after_seconds": 42, "limit": 5}


# --- the limiter, in memory and in Redis -----------------------------------------------------


@pytest.fixture(params=["memory", "redis"])
def make_limiter(
    request: pytest.FixtureRequest, redis_namespace: str
) -> Callable[[str], RateLimiter]:
    """Build a limiter for a spec, in memory or in Redis db 15 under a namespace of this test."""
    storage = "memory://" if request.param == "memory" else REDIS_TEST_URL

    def build(spec: str) -> RateLimiter:
        return RateLimiter(effective_rate_limits(spec), storage, namespace=redis_namespace)

    return build


def test_hits_until_the_limit_then_refuses(make_limiter: Callable[[str], RateLimiter]) -> None:
    """Each hit spends one request; the one past the limit is refused with a retry delay
    within the window."""
    limiter = make_limiter("start=3/minute")
    results = [limiter.hit("start", ALICE) for _ in range(4)]
    assert [r.allowed for r in results] == [True, True, True, False]
    assert [r.remaining for r in results] == [2, 1, 0, 0]
    assert all(r.limit == 3 for r in results)
    assert results[-1].retry_after_seconds in range(1, 61)
    assert results[0].retry_after_seconds == 0


def test_keys_and_groups_are_isolated(make_limiter: Callable[[str], RateLimiter]) -> None:
    """One user's spent budget does not affect another user, nor the same user's other group."""
    limiter = make_limiter("start=1/minute;read=1/minute")
    assert limiter.hit("start", ALICE).allowed
    assert not limiter.hit("start", ALICE).allowed
    assert limiter.hit("start", BOB).allowed
    assert limiter.hit("read", ALICE).allowed


def test_peek_does_not_count(make_limiter: Callable[[str], RateLimiter]) -> None:
    """Peeking reports whether a request would fit without spending it."""
    limiter = make_limiter("anon=1/minute")
    assert limiter.peek("anon", "203.0.113.9").allowed
    assert limiter.peek("anon", "203.0.113.9").allowed
    assert limiter.hit("anon", "203.0.113.9").allowed
    refused = limiter.peek("anon", "203.0.113.9")
    assert not refused.allowed
    assert refused.retry_after_seconds >= 1


def test_namespaces_separate_limiters_sharing_redis(redis_namespace: str) -> None:
    """Two limiters with different namespaces on one Redis do not see each other's hits."""
    first = RateLimiter(
        effective_rate_limits("start=1/minute"), REDIS_TEST_URL, namespace=redis_namespace
    )
    second = RateLimiter(
        effective_rate_limits("start=1/minute"), REDIS_TEST_URL, namespace=redis_namespace + "-b"
    )
    try:
        assert first.hit("start", ALICE).allowed
        assert not first.hit("start", ALICE).allowed
        assert second.hit("start", ALICE).allowed
    finally:
        second.clear("start", ALICE)


def test_unreachable_redis_still_limits_locally() -> None:
    """With Redis unreachable the limiter does not fail open: it counts in this process, with
    the same limits, and says so."""
    limiter = RateLimiter(effective_rate_limits("start=1/minute"), "redis://127.0.0.1:1/0")
    first = limiter.hit("start", ALICE)
    assert (first.allowed, first.scope) == (True, "local")
    assert not limiter.hit("start", ALICE).allowed
    assert not limiter.peek("start", ALICE).allowed
    assert limiter.hit("start", BOB).allowed
    status = limiter.status()
    assert (status.storage, status.scope, status.fallbacks) == ("redis", "local", 1)
    assert status.fallback_since is not None


def test_scope_says_where_the_count_is(make_limiter: Callable[[str], RateLimiter]) -> None:
    """Counts in Redis are "shared" by the replicas; counts in memory are this process's
    ("local"), and the status says which storage is configured."""
    limiter = make_limiter("start=5/minute")
    result = limiter.hit("start", ALICE)
    status = limiter.status()
    if limiter.breaker is None:
        assert result.scope == "local"
        assert status == RateLimitStatus("memory", "local", None, 0)
    else:
        assert result.scope == "shared"
        assert status == RateLimitStatus("redis", "shared", None, 0)


def test_other_storage_schemes_are_refused() -> None:
    """REDIS_URL must name Redis (or Valkey); the error does not repeat the URL, which may
    hold a password."""
    with pytest.raises(ConfigurationError, match="REDIS_URL") as caught:
        RateLimiter(effective_rate_limits(""), "memcached://user:s3cret@127.0.0.1:11211")
    assert "s3cret" not in str(caught.value)


def test_unknown_group_is_a_programming_error() -> None:
    """Hitting a group that has no limit, or building a dependency for one, fails loudly."""
    limiter = RateLimiter({"start": limits.parse("1/minute")})
    with pytest.raises(ValueError, match="no rate limit configured"):
        limiter.hit("read", ALICE)
    with pytest.raises(ValueError, match="not a per-user"):
        authenticated("anon")
    with pytest.raises(ConfigurationError):
        RateLimiter({"bogus": limits.parse("1/minute")})


# --- over HTTP -------------------------------------------------------------------------------


def make_app(verifier: TokenVerifier, limiter: RateLimiter) -> FastAPI:
    """An app with one route per group: start, read, and a public one limited per IP."""
    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(RateLimitScopeMiddleware)
    app.state.verifier = verifier
    app.state.limiter = limiter
    app.state.users = UserDirectory(lambda _user_id: True, cache_seconds=0)  # no database here

    @app.post("/workflows/start")
    def start(principal: StartPrincipal) -> dict[str, Any]:
        return {"user_id": principal.user_id}

    @app.get("/jobs")
    def jobs(principal: ReadPrincipal) -> dict[str, Any]:
        return {"user_id": principal.user_id}

    @app.get("/health", dependencies=[Depends(limit_anonymous)])
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


@pytest.fixture(params=["memory", "redis"])
def app_factory(
    request: pytest.FixtureRequest,
    make_settings: Callable[..., Settings],
    redis_namespace: str,
) -> Iterator[Callable[[str], FastAPI]]:
    """Build the app for a RATE_LIMITS spec, with memory or Redis storage from Settings."""

    def build(spec: str) -> FastAPI:
        redis_url = REDIS_TEST_URL if request.param == "redis" else None
        settings = make_settings(rate_limits=spec, redis_url=redis_url)
        limiter = RateLimiter.from_settings(settings, namespace=redis_namespace)
        return make_app(TokenVerifier(settings), limiter)

    yield build


def expected_scope(app: FastAPI) -> str:
    """The `X-RateLimit-Scope` an app's limiter answers with while its storage works."""
    return "local" if app.state.limiter.breaker is None else "shared"


def _token(jwks: JwksEndpoint, key: SigningKey, user_id: str) -> dict[str, str]:
    return bearer(key.sign(supabase_claims(issuer=jwks.issuer, user_id=user_id)))


def test_per_user_limit_returns_429_with_retry_after(
    app_factory: Callable[[str], FastAPI], jwks: JwksEndpoint, es_key: SigningKey
) -> None:
    """A user past the "start" limit gets 429 with Retry-After and the uniform body, while
    another user, and the same user's "read" budget, are unaffected; every answer names the
    scope of its count (X-RateLimit-Scope)."""
    app = app_factory("start=2/minute;read=5/minute;anon=5/minute")
    client = TestClient(app)
    alice, bob = _token(jwks, es_key, ALICE), _token(jwks, es_key, BOB)
    scope = expected_scope(app)

    answers = [client.post("/workflows/start", headers=alice) for _ in range(2)]
    assert [(a.status_code, a.headers[SCOPE_HEADER]) for a in answers] == [(200, scope)] * 2
    refused = client.post("/workflows/start", headers=alice)
    assert refused.status_code == 429
    assert refused.headers[SCOPE_HEADER] == scope
    assert int(refused.headers["retry-after"]) in range(1, 61)
    error = refused.json()["error"]
    assert error["code"] == "rate_limited"
    assert error["details"]["limit"] == 2
    assert error["details"]["retry_after_seconds"] == int(refused.headers["retry-after"])

    assert client.post("/workflows/start", headers=bob).status_code == 200
    assert client.get("/jobs", headers=alice).status_code == 200


def test_anonymous_limit_is_per_ip_and_spent_by_failures_only(
    app_factory: Callable[[str], FastAPI], jwks: JwksEndpoint, es_key: SigningKey
) -> None:
    """Failed authentications spend the caller IP's "anon" budget; once spent, that IP's
    failures get 429 while its valid users still pass, and other addresses get their 401."""
    app = app_factory("start=10/minute;read=10/minute;anon=2/minute")
    attacker = TestClient(app, client=("203.0.113.7", 40000))
    other = TestClient(app, client=("198.51.100.8", 40000))

    unauthenticated = attacker.get("/jobs")
    assert unauthenticated.status_code == 401
    assert unauthenticated.headers[SCOPE_HEADER] == expected_scope(app)
    assert attacker.get("/jobs", headers=bearer("garbage")).status_code == 401
    blocked = attacker.get("/jobs", headers=bearer("garbage"))
    assert blocked.status_code == 429
    assert "retry-after" in blocked.headers
    assert blocked.headers[SCOPE_HEADER] == expected_scope(app)
    assert attacker.get("/jobs", headers=_token(jwks, es_key, ALICE)).status_code == 200

    assert other.get("/jobs").status_code == 401
    assert other.get("/jobs", headers=_token(jwks, es_key, BOB)).status_code == 200


def test_successful_requests_do_not_spend_the_anon_budget(
    app_factory: Callable[[str], FastAPI], jwks: JwksEndpoint, es_key: SigningKey
) -> None:
    """Authenticated users are limited per user, not by the per-IP anonymous limit."""
    client = TestClient(app_factory("read=10/minute;anon=1/minute"))
    alice = _token(jwks, es_key, ALICE)
    assert [client.get("/jobs", headers=alice).status_code for _ in range(3)] == [200] * 3


def test_public_route_is_limited_per_ip(app_factory: Callable[[str], FastAPI]) -> None:
    """Public routes count every request against the caller IP's "anon" budget."""
    app = app_factory("anon=2/minute")
    first = TestClient(app, client=("192.0.2.1", 1))
    second = TestClient(app, client=("192.0.2.2", 1))
    assert [first.get("/health").status_code for _ in range(3)] == [200, 200, 429]
    assert second.get("/health").status_code == 200
