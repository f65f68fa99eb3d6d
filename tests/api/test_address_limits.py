"""Per-address budgets on the real app: only failed credentials spend them, so valid users
behind a shared address are never locked out; guessing the operator token is limited; health
probes are never refused; X-Forwarded-For counts only from TRUSTED_PROXIES."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from tokens import bearer

from api.app import create_app
from api.client_address import forwarded_hops, resolve_client, trusted_networks
from api.probe import ProbeCache, Reachability
from engine.db.store import JobStore
from engine.dispatch import RunStarter
from engine.errors import ConfigurationError
from engine.settings import Settings

if TYPE_CHECKING:
    # Annotation only: at run time several conftest modules share the name `conftest`.
    from conftest import ApiUser

OPERATOR_TOKEN = "operator-token-for-tests"
SHARED = ("203.0.113.50", 40000)
ELSEWHERE = ("198.51.100.9", 40000)
START_BODY = {"workflow_id": "demo_offline_v1", "input_data": {"text": "hi"}}


def at(client: TestClient, address: tuple[str, int]) -> TestClient:
    """Another client of the same (started) app whose requests come from `address`."""
    return TestClient(client.app, client=address)


# --- a noisy client does not lock out its neighbours --------------------------------------------


def test_noisy_client_does_not_lock_out_valid_users_at_its_address(
    make_client: Callable[..., TestClient], make_user: Callable[..., ApiUser]
) -> None:
    """One address spends its whole "anon" budget on bad tokens: its failures get 429, while
    valid users at that same address keep reading and starting, limited per user only."""
    client = at(make_client(rate_limits="anon=3/minute"), SHARED)
    noisy = [client.get("/jobs", headers=bearer("forged")).status_code for _ in range(20)]
    assert noisy[:3] == [401] * 3
    assert set(noisy[3:]) == {429}

    for user in (make_user(), make_user()):
        assert client.get("/jobs", headers=user.headers).status_code == 200
        assert client.get("/workflows", headers=user.headers).status_code == 200
        started = client.post("/workflows/start", json=START_BODY, headers=user.headers)
        assert started.status_code == 201, started.text


def test_health_probes_are_never_refused(make_client: Callable[..., TestClient]) -> None:
    """300 probes from one address, with a tiny "anon" budget already spent there: every one
    answers 200 (the probe has its own treatment, not the anonymous budget)."""
    client = at(make_client(rate_limits="anon=2/minute"), SHARED)
    assert [client.get("/jobs").status_code for _ in range(3)] == [401, 401, 429]
    statuses = [client.get("/health").status_code for _ in range(300)]
    assert statuses == [200] * 300


# --- the operator token ------------------------------------------------------------------------


def test_guessing_the_operator_token_is_limited(make_client: Callable[..., TestClient]) -> None:
    """operator=10/minute: of 100 wrong tokens from one address the first 10 are 401 and the
    rest 429 with Retry-After; while the budget is spent the right token is refused there too
    (a guess cannot tell a hit from a miss), but not from another address."""
    client = make_client(metrics_token=OPERATOR_TOKEN)
    guesser = at(client, SHARED)
    responses = [guesser.get("/metrics", headers=bearer(f"guess-{n}")) for n in range(100)]
    assert [r.status_code for r in responses[:10]] == [401] * 10
    assert {r.status_code for r in responses[10:]} == {429}
    assert 1 <= int(responses[-1].headers["retry-after"]) <= 60
    assert responses[-1].json()["error"]["code"] == "rate_limited"

    right = bearer(OPERATOR_TOKEN)
    assert guesser.get("/metrics", headers=right).status_code == 429
    assert guesser.get("/operator/alerts", headers=right).status_code == 429
    assert at(client, ELSEWHERE).get("/metrics", headers=right).status_code == 200
    assert at(client, ELSEWHERE).get("/operator/alerts", headers=right).status_code == 200


def test_right_operator_token_spends_nothing(make_client: Callable[..., TestClient]) -> None:
    """A scraper with the right token is never limited by the guessing budget."""
    app = make_client(metrics_token=OPERATOR_TOKEN, rate_limits="operator=1/minute")
    right = bearer(OPERATOR_TOKEN)
    statuses = [at(app, SHARED).get("/metrics", headers=right).status_code for _ in range(5)]
    assert statuses == [200] * 5


def test_operator_endpoints_are_closed_without_a_token(
    make_client: Callable[..., TestClient], make_user: Callable[..., ApiUser]
) -> None:
    """METRICS_TOKEN unset: every operator endpoint answers 403 naming METRICS_TOKEN, to
    anyone (a signed-in user too), and guessing has nothing to guess."""
    client = make_client(metrics_token=None)
    for path in ("/metrics", "/operator/alerts"):
        for headers in ({}, make_user().headers, bearer("anything")):
            response = client.get(path, headers=headers)
            assert response.status_code == 403, (path, response.text)
            error = response.json()["error"]
            assert error["code"] == "forbidden"
            assert "METRICS_TOKEN" in error["message"]


# --- trusted proxies -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("peer", "header", "trusted", "client"),
    [
        ("203.0.113.1", "198.51.100.7", "", "203.0.113.1"),  # no trusted proxies: the peer
        ("203.0.113.1", "198.51.100.7", "10.0.0.0/8", "203.0.113.1"),  # untrusted peer
        ("10.0.0.2", "198.51.100.7", "10.0.0.0/8", "198.51.100.7"),
        ("10.0.0.2", "6.6.6.6, 198.51.100.7", "10.0.0.0/8", "198.51.100.7"),  # spoofed left
        ("10.0.0.2", "198.51.100.7, 10.0.0.9", "10.0.0.0/8", "198.51.100.7"),  # two proxies
        ("10.0.0.2", "10.0.0.8, 10.0.0.9", "10.0.0.0/8", "10.0.0.8"),  # all trusted
        ("10.0.0.2", "", "10.0.0.0/8", "10.0.0.2"),  # a trusted peer with no header
        ("10.0.0.2", "2001:DB8::1", "10.0.0.0/8, ::1", "2001:db8::1"),  # one spelling
        ("::1", "not-an-ip", "::1", "not-an-ip"),
    ],
)
def test_resolve_client(peer: str, header: str, trusted: str, client: str) -> None:
    """X-Forwarded-For is read from the right, and only when the peer is a trusted proxy."""
    assert resolve_client(peer, forwarded_hops([header]), trusted_networks(trusted)) == client


def test_several_forwarded_headers_are_one_list() -> None:
    """Repeated X-Forwarded-For headers are joined in order, as RFC 7230 allows."""
    assert forwarded_hops(["1.1.1.1, 2.2.2.2", " 3.3.3.3 "]) == ["1.1.1.1", "2.2.2.2", "3.3.3.3"]
    assert resolve_client(None, [], ()) == "unknown"


def test_malformed_trusted_proxies_fail_at_startup(
    make_settings: Callable[..., Settings],
) -> None:
    """A typo in TRUSTED_PROXIES stops the app from being built, naming the entry."""
    with pytest.raises(ConfigurationError, match=re.escape("'10.0.0.0/33'")):
        create_app(make_settings(trusted_proxies="10.0.0.0/8, 10.0.0.0/33"))


def _anon_statuses(client: TestClient, forwarded: str) -> list[int]:
    headers = {"X-Forwarded-For": forwarded}
    return [client.get("/jobs", headers=headers).status_code for _ in range(2)]


def test_forwarded_for_counts_only_from_trusted_proxies(
    make_client: Callable[..., TestClient],
) -> None:
    """Behind a trusted proxy each forwarded client has its own budget; without
    TRUSTED_PROXIES the header is ignored, so it cannot buy a fresh budget."""
    proxy = ("10.1.2.3", 5000)
    trusting = at(make_client(rate_limits="anon=1/minute", trusted_proxies="10.0.0.0/8"), proxy)
    assert _anon_statuses(trusting, "198.51.100.1") == [401, 429]
    assert _anon_statuses(trusting, "198.51.100.2") == [401, 429]

    ignoring = at(make_client(rate_limits="anon=1/minute"), proxy)
    assert _anon_statuses(ignoring, "198.51.100.1") == [401, 429]
    assert _anon_statuses(ignoring, "198.51.100.2") == [429, 429]


# --- the probe cache ---------------------------------------------------------------------------


class Checks:
    """A reachability check that counts its calls and can be held open."""

    def __init__(self) -> None:
        self.calls = 0
        self.release = threading.Event()
        self.entered = threading.Event()
        self.hold = False

    def __call__(self) -> Reachability:
        self.calls += 1
        self.entered.set()
        if self.hold:
            self.release.wait(timeout=30)
        return Reachability(database=True, prefect=self.calls % 2 == 1)


def test_probe_answer_is_reused_for_its_max_age() -> None:
    """Within max_age the last answer is returned without checking again."""
    now = [0.0]
    checks = Checks()
    cache = ProbeCache(1.0, clock=lambda: now[0])
    assert [cache.get(checks).prefect for _ in range(5)] == [True] * 5
    assert checks.calls == 1
    now[0] = 1.5
    assert cache.get(checks).prefect is False
    assert checks.calls == 2


def test_callers_do_not_wait_for_a_slow_refresh() -> None:
    """While one caller refreshes a stale answer, the others get the previous one at once."""
    now = [0.0]
    checks = Checks()
    cache = ProbeCache(1.0, clock=lambda: now[0])
    cache.get(checks)
    now[0] = 5.0
    checks.hold = True
    checks.entered.clear()
    results: list[Any] = []
    refresher = threading.Thread(target=lambda: results.append(cache.get(checks)))
    refresher.start()
    assert checks.entered.wait(timeout=30)
    assert cache.get(checks).prefect is True  # the previous answer, while check 2 runs
    checks.release.set()
    refresher.join(timeout=30)
    assert results[0].prefect is False
    assert checks.calls == 2


def test_served_app_ignores_forwarded_for_unless_trusted(
    serve_app: Callable[[FastAPI], str],
    make_settings: Callable[..., Settings],
    job_store: JobStore,
    closed_starter: RunStarter,
) -> None:
    """Served as `supaflow api` serves it (api.server.SERVER_OPTIONS), uvicorn does not rewrite
    the peer from X-Forwarded-For (it would trust 127.0.0.1 by default): without
    TRUSTED_PROXIES, two spoofed headers from one local client share one budget."""

    def statuses(trusted: str) -> list[int]:
        settings = make_settings(rate_limits="anon=1/minute", trusted_proxies=trusted)
        base = serve_app(create_app(settings, store=job_store, starter=closed_starter))
        with httpx.Client(base_url=base) as http:
            return [
                http.get("/jobs", headers={"X-Forwarded-For": f"198.51.100.{n}"}).status_code
                for n in (1, 2)
            ]

    assert statuses("") == [401, 429]
    assert statuses("127.0.0.1, ::1") == [401, 401]
