"""The rate limiter when its Redis dies and comes back: a private redis-server (a subprocess on
a free port, with a password) is killed and started again under the limiter and the real app.

While Redis is down, requests are answered and limited by this process's own counts (429 once
spent here), the answers say `X-RateLimit-Scope: local`, /health and /metrics report the
fallback, Redis is asked about once per cool-down, and the password never reaches the log;
once Redis is back, a probe after the cool-down makes the limits shared again."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from waiting import wait_until

from api.ratelimit import SCOPE_HEADER, RateLimiter, effective_rate_limits
from bench.private_redis import REDIS_SERVER, PrivateRedis

OPERATOR_TOKEN = "fallback-operator-token"
OPERATOR = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
ALICE = "0a6c3b0e-0000-4000-8000-00000000a11c"

pytestmark = pytest.mark.skipif(not Path(REDIS_SERVER).exists(), reason="needs redis-server")


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A running private redis-server, killed after the test."""
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


class Records(logging.Handler):
    """Keeps every record it is given."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Keep `record`."""
        self.records.append(record)


@pytest.fixture
def limiter_log() -> Iterator[list[logging.LogRecord]]:
    """The records the rate limiter logs (INFO and up) during the test.

    A handler on the limiter's own logger, not caplog's on the root: the app's start may
    configure logging (Prefect) and replace the root's handlers.
    """
    logger = logging.getLogger("api.ratelimit")
    handler, level = Records(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def fallback_gauge(client: TestClient) -> float:
    """`supaflow_rate_limit_local_fallback` as GET /metrics shows it."""
    response = client.get("/metrics", headers=OPERATOR)
    assert response.status_code == 200
    for family in text_string_to_metric_families(response.text):
        if family.name == "supaflow_rate_limit_local_fallback":
            return float(family.samples[0].value)
    raise AssertionError("supaflow_rate_limit_local_fallback is not exposed")


def test_redis_killed_limits_locally_then_shared_again(
    private_redis: PrivateRedis,
    make_client: Callable[..., TestClient],
    limiter_log: list[logging.LogRecord],
) -> None:
    """Redis killed: the API keeps answering, the "anon" limit is enforced by this process's
    own count (429 after 3 failed authentications), every answer and /health say "local",
    /metrics shows the fallback. Redis started again: after the cool-down the answers say
    "shared" again. One warning and one info line in all, neither naming the password."""
    client = make_client(
        redis_url=private_redis.url,
        rate_limits="anon=3/minute",
        rate_limit_fallback_seconds=0.5,
        metrics_token=OPERATOR_TOKEN,
    )
    first = client.get("/jobs")
    assert (first.status_code, first.headers[SCOPE_HEADER]) == (401, "shared")
    health = client.get("/health").json()
    assert health["rate_limit"] == {"storage": "redis", "scope": "shared", "fallback_since": None}
    assert fallback_gauge(client) == 0.0

    private_redis.kill()
    answers = [client.get("/jobs") for _ in range(4)]
    assert [(a.status_code, a.headers[SCOPE_HEADER]) for a in answers] == [
        (401, "local"), (401, "local"), (401, "local"), (429, "local"),
    ]  # fmt: skip
    refused = answers[-1]
    assert refused.json()["error"]["code"] == "rate_limited"
    assert refused.json()["error"]["details"]["limit"] == 3
    assert int(refused.headers["retry-after"]) in range(1, 61)

    down = client.get("/health")
    assert down.status_code == 200
    assert down.json()["status"] == "degraded"
    limit_health = down.json()["rate_limit"]
    assert (limit_health["storage"], limit_health["scope"]) == ("redis", "local")
    assert datetime.fromisoformat(limit_health["fallback_since"]).tzinfo is not None
    assert fallback_gauge(client) == 1.0

    private_redis.start()
    wait_until(
        lambda: client.get("/jobs").headers[SCOPE_HEADER] == "shared",
        timeout=10,
        what="the limits to be shared again",
    )
    assert client.get("/health").json()["rate_limit"]["fallback_since"] is None
    assert fallback_gauge(client) == 0.0

    assert [r.levelno for r in limiter_log] == [logging.WARNING, logging.INFO]
    assert all(private_redis.password not in r.getMessage() for r in limiter_log)


def test_while_down_redis_is_asked_once_per_cool_down(private_redis: PrivateRedis) -> None:
    """With Redis dead and a long cool-down, 50 requests ask it once (the one that found it
    down) and are all counted locally: the limit of 5 refuses the 45 after it."""
    limiter = RateLimiter(
        effective_rate_limits("start=5/minute"),
        private_redis.url,
        namespace=f"test-{uuid.uuid4().hex}",
        fallback_seconds=60,
    )
    breaker = limiter.breaker
    assert breaker is not None
    assert limiter.hit("start", ALICE).scope == "shared"
    before = breaker.shared_attempts

    private_redis.kill()
    results = [limiter.hit("start", ALICE) for _ in range(50)]

    assert breaker.shared_attempts - before == 1
    assert breaker.fallbacks == 1
    assert {r.scope for r in results} == {"local"}
    assert [r.allowed for r in results] == [True] * 5 + [False] * 45


def test_a_failed_probe_keeps_the_limits_local(private_redis: PrivateRedis) -> None:
    """Redis still dead when the cool-down ends: the probe fails, the limiter stays local
    (and counting), and each cool-down costs one more attempt, not one per request."""
    now = [0.0]
    limiter = RateLimiter(
        effective_rate_limits("read=100/minute"),
        private_redis.url,
        namespace=f"test-{uuid.uuid4().hex}",
        fallback_seconds=10,
        clock=lambda: now[0],
    )
    breaker = limiter.breaker
    assert breaker is not None
    private_redis.kill()
    for step in range(40):  # 40 requests over 39 s: the failure at 0, probes at 10, 20, 30
        now[0] = float(step)
        assert limiter.hit("read", ALICE).scope == "local"
    assert breaker.shared_attempts == 4
    assert limiter.status().scope == "local"
    assert limiter.peek("read", ALICE).remaining == 60


def test_without_redis_the_limits_are_local(make_client: Callable[..., TestClient]) -> None:
    """No REDIS_URL: each process counts its own requests, and says so ("local", storage
    "memory", never a fallback); /health, which no limit applies to, has no scope header."""
    client = make_client(rate_limits="anon=1/minute")
    answers = [client.get("/jobs") for _ in range(2)]
    assert [(a.status_code, a.headers[SCOPE_HEADER]) for a in answers] == [
        (401, "local"),
        (429, "local"),
    ]
    health = client.get("/health")
    assert SCOPE_HEADER not in health.headers
    assert health.json()["rate_limit"] == {
        "storage": "memory",
        "scope": "local",
        "fallback_since": None,
    }
