"""Supabase JWT verification against a real local JWKS server, with real tokens."""

from __future__ import annotations

import json
import re
import stat
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from tokens import (
    JwksEndpoint,
    SigningKey,
    b64url,
    bearer,
    new_es256_key,
    sign_hs256,
    supabase_claims,
    unsigned_token,
)

from api.auth import (
    AuthError,
    Principal,
    TokenVerifier,
    allowed_algorithms,
    bearer_token,
    principal_from_claims,
)
from api.deps import ReadPrincipal
from api.errors import install_error_handlers
from api.identity import UserDirectory
from api.ratelimit import DEFAULT_RATE_LIMITS, RateLimiter, effective_rate_limits
from engine.security import local_keys
from engine.security.local_keys import jwk_thumbprint, load_or_create_signing_key, mint_access_token
from engine.settings import Settings

HS_SECRET = "super-secret-jwt-token-with-at-least-32-characters-long"
USER_ID = "6f1c2a8e-4b7d-4e3a-9c1f-2d5e8a7b9c01"


def make_app(verifier: TokenVerifier) -> FastAPI:
    """A minimal app: one route that needs a signed-in user, through the API's one identity
    check (default rate limits, in memory)."""
    app = FastAPI()
    install_error_handlers(app)
    app.state.verifier = verifier
    app.state.limiter = RateLimiter(effective_rate_limits(DEFAULT_RATE_LIMITS))
    app.state.users = UserDirectory(lambda _user_id: True, cache_seconds=0)  # no database here

    @app.get("/me")
    def me(principal: ReadPrincipal) -> dict[str, Any]:
        return {"user_id": principal.user_id, "email": principal.email, "role": principal.role}

    return app


# --- pure pieces -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "token", "challenge_error"),
    [
        ("Bearer abc.def.ghi", "abc.def.ghi", None),
        ("bearer abc.def.ghi", "abc.def.ghi", None),
        ("  Bearer   abc.def.ghi  ", "abc.def.ghi", None),
        (None, None, "bare"),
        ("", None, "bare"),
        ("Basic dXNlcjpwYXNz", None, "bare"),
        ("Token abc", None, "bare"),
        ("Bearer", None, "invalid_token"),
        ("Bearer    ", None, "invalid_token"),
    ],
)
def test_bearer_token_parsing(
    header: str | None, token: str | None, challenge_error: str | None
) -> None:
    """Only the Bearer scheme yields a token; no credentials (or another scheme) gives a bare
    challenge, an empty bearer token an invalid_token challenge."""
    if token is not None:
        assert bearer_token(header) == token
        return
    with pytest.raises(AuthError) as caught:
        bearer_token(header)
    expected_error = None if challenge_error == "bare" else challenge_error
    assert caught.value.error == expected_error


@pytest.mark.parametrize(
    ("make_key", "expected"),
    [
        (lambda: ec.generate_private_key(ec.SECP256R1()).public_key(), ["ES256"]),
        (lambda: ec.generate_private_key(ec.SECP384R1()).public_key(), []),
        (lambda: rsa.generate_private_key(65537, 2048).public_key(), ["RS256"]),
        (lambda: "a shared secret", []),
        (lambda: b"-----BEGIN PUBLIC KEY-----", []),
    ],
    ids=["p256", "p384", "rsa", "str", "pem-bytes"],
)
def test_allowed_algorithms_follow_key_type(
    make_key: Callable[[], object], expected: list[str]
) -> None:
    """The algorithm allowed is chosen by the key type alone; unknown keys allow nothing."""
    assert allowed_algorithms(make_key()) == expected


@pytest.mark.parametrize(
    ("message", "error", "expected"),
    [
        ("missing bearer token", None, 'Bearer realm="supaflow"'),
        (
            "token has expired",
            "invalid_token",
            'Bearer realm="supaflow", error="invalid_token", error_description="token has expired"',
        ),
        (
            'bad "quote" \\ and\nnewline',
            "invalid_token",
            'Bearer realm="supaflow", error="invalid_token", '
            "error_description=\"bad 'quote' ' and'newline\"",
        ),
    ],
)
def test_www_authenticate_header(message: str, error: str | None, expected: str) -> None:
    """Challenges follow RFC 6750; the description never breaks out of its quoted string."""
    assert AuthError(message, error=error).www_authenticate == expected


@pytest.mark.parametrize(
    ("overrides", "accepted"),
    [
        ({}, True),
        ({"email": ""}, True),
        ({"role": "service_role"}, False),
        ({"role": "anon"}, False),
        ({"sub": "not-a-uuid"}, False),
        ({"sub": ""}, False),
        ({"sub": 42}, False),
    ],
)
def test_principal_from_claims(overrides: dict[str, Any], accepted: bool) -> None:
    """Only signed-in users with a UUID subject become principals; empty email means None."""
    claims = {**supabase_claims(issuer="http://x/auth/v1", user_id=USER_ID), **overrides}
    if not accepted:
        with pytest.raises(AuthError):
            principal_from_claims(claims)
        return
    principal = principal_from_claims(claims)
    assert principal.user_id == USER_ID
    assert principal.role == "authenticated"
    assert principal.email == (claims["email"] or None)
    assert principal.claims == claims


# --- tokens that verify ----------------------------------------------------------------------


@pytest.mark.parametrize("key_fixture", ["es_key", "rs_key"])
def test_jwks_signed_token_verifies(
    key_fixture: str, request: pytest.FixtureRequest, jwks: JwksEndpoint, verifier: TokenVerifier
) -> None:
    """ES256 and RS256 tokens signed by keys in the project's JWKS reach the route."""
    key: SigningKey = request.getfixturevalue(key_fixture)
    token = key.sign(supabase_claims(issuer=jwks.issuer, user_id=USER_ID, email="a@example.com"))
    response = TestClient(make_app(verifier)).get("/me", headers=bearer(token))
    assert response.status_code == 200, response.text
    assert response.json() == {
        "user_id": USER_ID,
        "email": "a@example.com",
        "role": "authenticated",
    }


def test_hs256_token_verifies_with_jwt_secret(
    jwks: JwksEndpoint, make_settings: Callable[..., Settings]
) -> None:
    """A legacy HS256 token verifies with SUPABASE_JWT_SECRET, without touching the JWKS."""
    verifier = TokenVerifier(make_settings(supabase_jwt_secret=HS_SECRET))
    token = jwt.encode(
        supabase_claims(issuer=jwks.issuer, user_id=USER_ID), HS_SECRET, algorithm="HS256"
    )
    principal = verifier.verify(token)
    assert principal.user_id == USER_ID
    assert jwks.fetches == 0


@pytest.mark.parametrize(("seconds_ago", "accepted"), [(10, True), (3600, False)])
def test_expiry_leeway(
    seconds_ago: int,
    accepted: bool,
    jwks: JwksEndpoint,
    verifier: TokenVerifier,
    es_key: SigningKey,
) -> None:
    """A token that expired moments ago (clock skew) still verifies; an old one does not."""
    now = int(time.time())
    claims = supabase_claims(issuer=jwks.issuer, now=now - 7200, exp=now - seconds_ago)
    if accepted:
        assert isinstance(verifier.verify(es_key.sign(claims)), Principal)
    else:
        with pytest.raises(AuthError, match="expired"):
            verifier.verify(es_key.sign(claims))


# --- tokens that must be refused -------------------------------------------------------------


@dataclass(frozen=True)
class Ctx:
    """What a rejection case may use to build its request headers."""

    issuer: str
    es_key: SigningKey
    rs_key: SigningKey


def _expired(c: Ctx) -> dict[str, str]:
    now = int(time.time())
    return bearer(c.es_key.sign(supabase_claims(issuer=c.issuer, now=now - 7200, ttl_seconds=60)))


REJECTIONS: list[tuple[str, Callable[[Ctx], dict[str, str]], str | None]] = [
    ("expired", _expired, "invalid_token"),
    (
        "other-issuer",
        lambda c: bearer(c.es_key.sign(supabase_claims(issuer="https://evil.example/auth/v1"))),
        "invalid_token",
    ),
    (
        "wrong-audience",
        lambda c: bearer(c.es_key.sign(supabase_claims(issuer=c.issuer, aud="service"))),
        "invalid_token",
    ),
    (
        "no-audience",
        lambda c: bearer(c.es_key.sign(supabase_claims(issuer=c.issuer, aud=None))),
        "invalid_token",
    ),
    (
        "alg-none",
        lambda c: bearer(unsigned_token(supabase_claims(issuer=c.issuer))),
        "invalid_token",
    ),
    (
        "alg-none-with-known-kid",
        lambda c: bearer(
            unsigned_token(supabase_claims(issuer=c.issuer), headers={"kid": c.es_key.kid})
        ),
        "invalid_token",
    ),
    (
        "hs256-with-public-pem-as-secret",
        lambda c: bearer(
            sign_hs256(
                supabase_claims(issuer=c.issuer), c.rs_key.public_pem(), headers={"kid": "rs"}
            )
        ),
        "invalid_token",
    ),
    (
        "hs256-with-public-jwk-as-secret",
        lambda c: bearer(
            sign_hs256(
                supabase_claims(issuer=c.issuer),
                json.dumps(c.es_key.public_jwk()),
                headers={"kid": c.es_key.kid},
            )
        ),
        "invalid_token",
    ),
    (
        "service-role",
        lambda c: bearer(c.es_key.sign(supabase_claims(issuer=c.issuer, role="service_role"))),
        "invalid_token",
    ),
    (
        "no-role",
        lambda c: bearer(c.es_key.sign(supabase_claims(issuer=c.issuer, role=None))),
        "invalid_token",
    ),
    (
        "no-sub",
        lambda c: bearer(c.es_key.sign(supabase_claims(issuer=c.issuer, sub=None))),
        "invalid_token",
    ),
    (
        "no-exp",
        lambda c: bearer(c.es_key.sign(supabase_claims(issuer=c.issuer, exp=None))),
        "invalid_token",
    ),
    (
        "signed-by-unpublished-key-claiming-published-kid",
        lambda c: bearer(new_es256_key(c.es_key.kid).sign(supabase_claims(issuer=c.issuer))),
        "invalid_token",
    ),
    (
        "rs256-header-on-es256-key",
        lambda c: bearer(
            c.rs_key.sign(supabase_claims(issuer=c.issuer), headers={"kid": c.es_key.kid})
        ),
        "invalid_token",
    ),
    (
        "tampered-payload",
        lambda c: bearer(_tamper(c.es_key.sign(supabase_claims(issuer=c.issuer)))),
        "invalid_token",
    ),
    ("garbage", lambda c: bearer("not-a-jwt"), "invalid_token"),
    ("three-garbage-segments", lambda c: bearer("a.b.c"), "invalid_token"),
    (
        "unknown-kid",
        lambda c: bearer(new_es256_key("never-published").sign(supabase_claims(issuer=c.issuer))),
        "invalid_token",
    ),
    (
        "no-kid",
        lambda c: bearer(
            jwt.encode(supabase_claims(issuer=c.issuer), c.es_key.private_key, algorithm="ES256")
        ),
        "invalid_token",
    ),
    ("missing-header", lambda c: {}, None),
    ("basic-scheme", lambda c: {"Authorization": "Basic dXNlcjpwYXNzd29yZA=="}, None),
]


#: Why each case is refused (a regex); key confusion fails differently with and without the
#: HS256 secret configured, but always fails.
REASONS = {
    "expired": "token has expired",
    "other-issuer": "token issuer is not accepted",
    "wrong-audience": "token audience is not accepted",
    "no-audience": "token has no aud claim",
    "alg-none": "token has no key id",
    "alg-none-with-known-kid": "token algorithm is not allowed for its key",
    "hs256-with-public-pem-as-secret": "HS256 tokens are not accepted|token signature is invalid",
    "hs256-with-public-jwk-as-secret": "HS256 tokens are not accepted|token signature is invalid",
    "service-role": "token role is not accepted",
    "no-role": "token has no role claim",
    "no-sub": "token has no sub claim",
    "no-exp": "token has no exp claim",
    "signed-by-unpublished-key-claiming-published-kid": "token signature is invalid",
    "rs256-header-on-es256-key": "token algorithm is not allowed for its key",
    "tampered-payload": "token signature is invalid",
    "garbage": "token is malformed",
    "three-garbage-segments": "token is malformed",
    "unknown-kid": "token signing key is not known",
    "no-kid": "token has no key id",
    "missing-header": "missing bearer token",
    "basic-scheme": "authorization must use the Bearer scheme",
}


def _tamper(token: str) -> str:
    header, _, signature = token.split(".")
    payload = b64url(json.dumps(supabase_claims(issuer="x", role="authenticated")).encode())
    return f"{header}.{payload}.{signature}"


@pytest.fixture
def ctx(jwks: JwksEndpoint, es_key: SigningKey, rs_key: SigningKey) -> Ctx:
    """The issuer and keys rejection cases build tokens from."""
    return Ctx(jwks.issuer, es_key, rs_key)


@pytest.mark.parametrize("with_hs_secret", [False, True], ids=["jwks-only", "with-hs-secret"])
@pytest.mark.parametrize("rejection", REJECTIONS, ids=[r[0] for r in REJECTIONS])
def test_rejected_tokens_get_401_with_challenge(
    rejection: tuple[str, Callable[[Ctx], dict[str, str]], str | None],
    with_hs_secret: bool,
    ctx: Ctx,
    make_settings: Callable[..., Settings],
) -> None:
    """Every bad or missing credential is a 401 in the uniform body with an RFC 6750 challenge,
    for the expected reason, whether or not the HS256 secret is configured (key confusion
    never verifies)."""
    case, make_headers, challenge_error = rejection
    settings = make_settings(supabase_jwt_secret=HS_SECRET if with_hs_secret else None)
    client = TestClient(make_app(TokenVerifier(settings, jwks_refresh_cooldown_seconds=0)))
    response = client.get("/me", headers=make_headers(ctx))

    assert response.status_code == 401, f"{case}: {response.text}"
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == "unauthorized"
    assert re.fullmatch(REASONS[case], body["error"]["message"])
    challenge = response.headers["www-authenticate"]
    if challenge_error is None:
        assert challenge == 'Bearer realm="supaflow"'
    else:
        assert challenge.startswith(f'Bearer realm="supaflow", error="{challenge_error}"')
        assert 'error_description="' in challenge


@pytest.mark.parametrize(
    ("with_hs_secret", "message"),
    [(False, "HS256 tokens are not accepted"), (True, "token signature is invalid")],
)
def test_key_confusion_is_refused_for_the_right_reason(
    with_hs_secret: bool,
    message: str,
    jwks: JwksEndpoint,
    es_key: SigningKey,
    make_settings: Callable[..., Settings],
) -> None:
    """An HS256 token signed with the public key's PEM is checked only against the HS secret
    (or refused outright without one), never against the public key itself."""
    settings = make_settings(supabase_jwt_secret=HS_SECRET if with_hs_secret else None)
    verifier = TokenVerifier(settings)
    token = sign_hs256(
        supabase_claims(issuer=jwks.issuer), es_key.public_pem(), headers={"kid": es_key.kid}
    )
    with pytest.raises(AuthError) as caught:
        verifier.verify(token)
    assert caught.value.message == message
    assert jwks.fetches == 0


# --- JWKS fetching and rotation --------------------------------------------------------------


def test_kid_rotation_refetches_once(
    jwks: JwksEndpoint, es_key: SigningKey, verifier: TokenVerifier
) -> None:
    """A token naming a kid the cached JWKS lacks triggers one refetch and then verifies;
    known kids are served from the cache."""
    claims = supabase_claims(issuer=jwks.issuer, user_id=USER_ID)
    verifier.verify(es_key.sign(claims))
    verifier.verify(es_key.sign(claims))
    assert jwks.fetches == 1

    rotated = new_es256_key("es-rotated")
    jwks.publish(rotated, es_key)
    assert verifier.verify(rotated.sign(claims)).user_id == USER_ID
    assert jwks.fetches == 2


def test_unknown_kid_refetches_once_then_fails(
    jwks: JwksEndpoint, es_key: SigningKey, verifier: TokenVerifier
) -> None:
    """A kid absent even after a refetch is refused, after exactly one extra fetch."""
    verifier.verify(es_key.sign(supabase_claims(issuer=jwks.issuer)))
    stranger = new_es256_key("es-stranger")
    with pytest.raises(AuthError, match="signing key is not known"):
        verifier.verify(stranger.sign(supabase_claims(issuer=jwks.issuer)))
    assert jwks.fetches == 2


def test_unknown_kids_do_not_refetch_during_cooldown(
    jwks: JwksEndpoint, es_key: SigningKey, make_settings: Callable[..., Settings]
) -> None:
    """Within the refresh cooldown, random kids cannot make the API hammer the JWKS endpoint."""
    verifier = TokenVerifier(make_settings(), jwks_refresh_cooldown_seconds=3600)
    verifier.verify(es_key.sign(supabase_claims(issuer=jwks.issuer)))
    for n in range(5):
        with pytest.raises(AuthError):
            verifier.verify(new_es256_key(f"random-{n}").sign(supabase_claims(issuer=jwks.issuer)))
    assert jwks.fetches == 1


def test_empty_jwks_refuses_asymmetric_tokens_but_accepts_hs256(
    jwks: JwksEndpoint, es_key: SigningKey, make_settings: Callable[..., Settings]
) -> None:
    """A project still on the legacy secret publishes an empty JWKS: asymmetric tokens get 401
    (not an outage), HS256 tokens verify."""
    jwks.publish()
    verifier = TokenVerifier(
        make_settings(supabase_jwt_secret=HS_SECRET), jwks_refresh_cooldown_seconds=0
    )
    with pytest.raises(AuthError, match="signing key is not known"):
        verifier.verify(es_key.sign(supabase_claims(issuer=jwks.issuer)))
    token = jwt.encode(supabase_claims(issuer=jwks.issuer), HS_SECRET, algorithm="HS256")
    assert verifier.verify(token).role == "authenticated"


def test_unreachable_jwks_is_503_not_401(
    es_key: SigningKey, make_settings: Callable[..., Settings]
) -> None:
    """When the JWKS cannot be fetched the caller gets a retryable 503, not a false 401."""
    settings = make_settings(supabase_jwks_url="http://127.0.0.1:1/auth/v1/.well-known/jwks.json")
    client = TestClient(make_app(TokenVerifier(settings)))
    token = es_key.sign(supabase_claims(issuer=settings.jwt_issuer))
    response = client.get("/me", headers=bearer(token))
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "auth_unavailable"
    assert "Retry-After" in response.headers


# --- local development keys ------------------------------------------------------------------


def test_local_key_is_created_private_and_reloaded_stable(tmp_path: Path) -> None:
    """The local key is saved once with mode 0600; loading it again gives the same kid."""
    first = load_or_create_signing_key(tmp_path)
    assert first.path == tmp_path / "keys" / "jwt-es256.pem"
    assert stat.S_IMODE(first.path.stat().st_mode) == 0o600
    second = load_or_create_signing_key(tmp_path)
    assert second.kid == first.kid
    assert second.public_jwk() == first.public_jwk()
    assert list((tmp_path / "keys").iterdir()) == [first.path]


def test_jwk_thumbprint_matches_rfc7638_example() -> None:
    """The kid is an RFC 7638 thumbprint (checked on the RFC's own example key)."""
    members = {
        "e": "AQAB",
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSo"
        "c_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0"
        "_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhA"
        "I4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
    }
    assert jwk_thumbprint(members) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_local_minted_token_verifies_through_served_jwks(
    tmp_path: Path, jwks: JwksEndpoint, verifier: TokenVerifier
) -> None:
    """A token minted with the local key, its JWKS served over HTTP, verifies like a Supabase
    token and carries Supabase's claim shape."""
    key = load_or_create_signing_key(tmp_path)
    document = local_keys.jwks(key)
    assert set(document) == {"keys"}
    assert "d" not in document["keys"][0]
    jwks.publish(*document["keys"])
    user_id = str(uuid.uuid4())
    token = mint_access_token(
        key,
        user_id=user_id,
        email="dev@example.com",
        issuer=jwks.issuer,
        extra_claims={"user_metadata": {"name": "Dev"}},
    )
    assert jwt.get_unverified_header(token)["kid"] == key.kid
    principal = verifier.verify(token)
    assert principal.user_id == user_id
    assert principal.email == "dev@example.com"
    claims = principal.claims
    assert claims["aal"] == "aal1"
    assert claims["app_metadata"]["provider"] == "email"
    assert claims["user_metadata"] == {"name": "Dev"}
    uuid.UUID(claims["session_id"])
    assert claims["exp"] - claims["iat"] == 3600
