"""Authentication and rate limits at the level of the real app (the full token matrix is in
test_auth.py; the limiter itself in test_ratelimit.py)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from dbfixtures import create_user
from fastapi.testclient import TestClient
from tokens import JwksEndpoint, SigningKey, bearer, new_es256_key, sign_hs256, supabase_claims

if TYPE_CHECKING:
    # Annotation only: at run time several conftest modules share the name `conftest`.
    from conftest import ApiUser

HS_SECRET = "super-secret-jwt-token-with-at-least-32-characters-long"
START_BODY = {"workflow_id": "demo_offline_v1", "input_data": {"text": "hi"}}
ENDPOINTS = [
    ("POST", "/workflows/start"),
    ("GET", "/jobs"),
    ("GET", f"/jobs/{uuid.uuid4()}"),
    ("GET", "/workflows"),
]


def call(client: TestClient, method: str, path: str, headers: dict[str, str]) -> Any:
    """One request; POST sends a valid start body."""
    if method == "POST":
        return client.post(path, json=START_BODY, headers=headers)
    return client.get(path, headers=headers)


def job_count(db: psycopg.Connection[Any]) -> int:
    """Rows in public.jobs."""
    row = db.execute("select count(*) from public.jobs").fetchone()
    assert row is not None
    return int(row[0])


TokenCase = Callable[[JwksEndpoint, SigningKey, str], dict[str, str]]

AUTH_FAILURES: list[tuple[str, TokenCase, str | None]] = [
    ("missing", lambda jwks, key, uid: {}, None),
    ("basic-scheme", lambda jwks, key, uid: {"Authorization": "Basic dTpw"}, None),
    (
        "expired",
        lambda jwks, key, uid: bearer(
            key.sign(supabase_claims(issuer=jwks.issuer, user_id=uid, now=int(time.time()) - 7200))
        ),
        "token has expired",
    ),
    (
        "wrong-audience",
        lambda jwks, key, uid: bearer(
            key.sign(supabase_claims(issuer=jwks.issuer, user_id=uid, aud="somebody-else"))
        ),
        "token audience is not accepted",
    ),
    (
        "wrong-issuer",
        lambda jwks, key, uid: bearer(
            key.sign(supabase_claims(issuer="https://evil.example/auth/v1", user_id=uid))
        ),
        "token issuer is not accepted",
    ),
    (
        "unknown-key",
        lambda jwks, key, uid: bearer(
            new_es256_key("stranger").sign(supabase_claims(issuer=jwks.issuer, user_id=uid))
        ),
        "token signing key is not known",
    ),
    (
        "hs256-without-secret",
        lambda jwks, key, uid: bearer(
            sign_hs256(supabase_claims(issuer=jwks.issuer, user_id=uid), HS_SECRET)
        ),
        "HS256 tokens are not accepted",
    ),
    (
        "anon-role",
        lambda jwks, key, uid: bearer(
            key.sign(supabase_claims(issuer=jwks.issuer, user_id=uid, role="anon"))
        ),
        "token role is not accepted",
    ),
]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS, ids=[f"{m} {p}" for m, p in ENDPOINTS])
@pytest.mark.parametrize(
    ("make_headers", "description"),
    [(case, description) for _, case, description in AUTH_FAILURES],
    ids=[name for name, _, _ in AUTH_FAILURES],
)
def test_bad_credentials_are_401_with_a_challenge(
    client: TestClient,
    jwks: JwksEndpoint,
    es_key: SigningKey,
    db: psycopg.Connection[Any],
    method: str,
    path: str,
    make_headers: TokenCase,
    description: str | None,
) -> None:
    """Every job and workflow endpoint answers bad or missing credentials with 401, a Bearer
    challenge (bare when there were no bearer credentials) and the uniform error body; the
    request writes nothing."""
    user_id = create_user(db)
    response = call(client, method, path, make_headers(jwks, es_key, user_id))

    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="supaflow"')
    body = response.json()
    assert body["error"]["code"] == "unauthorized"
    if description is None:
        assert challenge == 'Bearer realm="supaflow"'
    else:
        assert 'error="invalid_token"' in challenge
        assert body["error"]["message"] == description
    assert job_count(db) == 0


def test_hs256_tokens_work_when_the_secret_is_configured(
    make_client: Callable[..., TestClient],
    jwks: JwksEndpoint,
    es_key: SigningKey,
    db: psycopg.Connection[Any],
) -> None:
    """A project with the legacy JWT secret: HS256 tokens start and read jobs as their user,
    ES256 tokens from the JWKS keep working beside them, and a wrong secret is refused."""
    client = make_client(supabase_jwt_secret=HS_SECRET)
    hs_user = create_user(db)
    hs_headers = bearer(sign_hs256(supabase_claims(issuer=jwks.issuer, user_id=hs_user), HS_SECRET))
    es_user = create_user(db)
    es_headers = bearer(es_key.sign(supabase_claims(issuer=jwks.issuer, user_id=es_user)))

    started = client.post("/workflows/start", json=START_BODY, headers=hs_headers)
    assert started.status_code == 201, started.text
    job_id = started.json()["job_id"]
    assert client.get(f"/jobs/{job_id}", headers=hs_headers).status_code == 200
    assert client.get(f"/jobs/{job_id}", headers=es_headers).status_code == 404
    owner = db.execute("select user_id::text from public.jobs where id = %s", [job_id]).fetchone()
    assert owner == (hs_user,)

    forged = bearer(
        sign_hs256(supabase_claims(issuer=jwks.issuer, user_id=hs_user), HS_SECRET + "x")
    )
    refused = client.get("/jobs", headers=forged)
    assert refused.status_code == 401
    assert refused.json()["error"]["message"] == "token signature is invalid"


@pytest.mark.parametrize(("method", "path"), ENDPOINTS, ids=[f"{m} {p}" for m, p in ENDPOINTS])
def test_token_of_a_deleted_user_is_401_on_every_route(
    client: TestClient,
    make_user: Callable[..., ApiUser],
    db: psycopg.Connection[Any],
    method: str,
    path: str,
) -> None:
    """A token stays valid until it expires, even after its user was deleted from auth.users.
    Every user route answers it with the same 401 naming the reason (not a 500 from the
    foreign key, not an empty 200 list), and nothing is written."""
    user = make_user()
    db.execute("delete from auth.users where id = %s", [user.user_id])

    response = call(client, method, path, user.headers)

    assert response.status_code == 401, response.text
    assert response.json()["error"] == {
        "code": "unauthorized",
        "message": "token subject is not a known user",
        "details": None,
    }
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert job_count(db) == 0


# --- rate limits -------------------------------------------------------------------------------


def test_third_start_in_a_minute_is_429_and_other_users_are_unaffected(
    make_client: Callable[..., TestClient],
    make_user: Callable[..., ApiUser],
    db: psycopg.Connection[Any],
) -> None:
    """start=2/minute: the third start is 429 with Retry-After in the error shape and writes
    nothing; the same user can still read, and another user can still start."""
    client = make_client(rate_limits="start=2/minute;read=100/minute;anon=100/minute")
    a, b = make_user(), make_user()

    assert [
        client.post("/workflows/start", json=START_BODY, headers=a.headers).status_code
        for _ in range(2)
    ] == [201, 201]
    limited = client.post("/workflows/start", json=START_BODY, headers=a.headers)

    assert limited.status_code == 429
    retry_after = int(limited.headers["retry-after"])
    assert 1 <= retry_after <= 60
    body = limited.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == "rate_limited"
    assert body["error"]["details"] == {"retry_after_seconds": retry_after, "limit": 2}
    assert job_count(db) == 2

    assert client.get("/jobs", headers=a.headers).status_code == 200
    assert client.post("/workflows/start", json=START_BODY, headers=b.headers).status_code == 201
    assert job_count(db) == 3


def test_read_limit_is_per_user_and_separate_from_start(
    make_client: Callable[..., TestClient], make_user: Callable[..., ApiUser]
) -> None:
    """read=3/minute counts GET requests per user; starting jobs is not a read."""
    client = make_client(rate_limits="start=10/minute;read=3/minute;anon=100/minute")
    a, b = make_user(), make_user()
    assert client.post("/workflows/start", json=START_BODY, headers=a.headers).status_code == 201
    statuses = [client.get("/jobs", headers=a.headers).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    assert client.get("/workflows", headers=a.headers).status_code == 429
    assert client.get("/jobs", headers=b.headers).status_code == 200
    assert client.post("/workflows/start", json=START_BODY, headers=a.headers).status_code == 201


def test_failed_authentication_spends_the_anonymous_budget(
    make_client: Callable[..., TestClient], make_user: Callable[..., ApiUser]
) -> None:
    """anon=2/minute: after two bad tokens from one address, that address's next failure is a
    429, while a valid user at the same address is not refused by that budget."""
    client = make_client(rate_limits="start=10/minute;read=100/minute;anon=2/minute")
    bad = bearer("not.a.token")
    assert [client.get("/jobs", headers=bad).status_code for _ in range(2)] == [401, 401]
    response = client.get("/jobs", headers=bad)
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "rate_limited"
    assert "retry-after" in response.headers
    assert client.get("/jobs", headers=make_user().headers).status_code == 200
