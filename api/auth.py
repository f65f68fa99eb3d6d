"""Supabase Auth access-token verification (the dependency that applies it is api.deps).

Supabase signs access tokens either with an asymmetric key published in the project's JWKS
(ES256 or RS256) or, for older projects, with the shared HS256 "JWT secret". `TokenVerifier`
accepts both, and never lets the token choose how it is checked: the allowed algorithm follows
from the key that verifies it, and a token whose header says HS256 is only ever checked against
the HS256 secret (so a public key can never be used as an HMAC secret).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.security import HTTPBearer

from api.decoding import canonical_user_id
from engine.errors import EngineError
from engine.settings import Settings

logger = logging.getLogger(__name__)

#: Realm named in every `WWW-Authenticate` challenge.
REALM = "supaflow"
#: The only `role` (and `aud`) Supabase puts in a signed-in user's access token.
AUTHENTICATED = "authenticated"
#: Claims a token must carry to be considered at all.
REQUIRED_CLAIMS = ("exp", "sub", "aud", "iss", "role")


class AuthError(EngineError):
    """The request carries no usable credentials. Answered with 401 and a Bearer challenge.

    `error` is the RFC 6750 error code for the challenge; None when the request had no bearer
    credentials at all (the RFC asks for a bare challenge then).
    """

    code = "unauthorized"

    def __init__(self, message: str, *, error: str | None = "invalid_token") -> None:
        super().__init__(message)
        self.error = error

    @property
    def www_authenticate(self) -> str:
        """The `WWW-Authenticate` header value for this failure (RFC 6750 section 3)."""
        if self.error is None:
            return f'Bearer realm="{REALM}"'
        return (
            f'Bearer realm="{REALM}", error="{self.error}", '
            f'error_description="{_quoted_string_safe(self.message)}"'
        )


class AuthUnavailableError(EngineError):
    """The signing keys could not be fetched, so no token can be checked right now (503).

    Distinct from `AuthError`: the caller's token may be fine; retrying later can succeed.
    """

    code = "auth_unavailable"


@dataclass(frozen=True)
class Principal:
    """The verified caller: a Supabase user and the claims of their access token."""

    user_id: str
    email: str | None
    role: str
    claims: dict[str, Any]


def _quoted_string_safe(text: str) -> str:
    """Make `text` fit an HTTP quoted-string: printable ASCII without quote or backslash."""
    return "".join(ch if " " <= ch <= "~" and ch not in '"\\' else "'" for ch in text)


def allowed_algorithms(key: object) -> list[str]:
    """The one algorithm a public key may verify, decided by its type, never by a token.

    EC P-256 keys verify ES256 and RSA keys RS256; any other key verifies nothing.
    """
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return ["ES256"]
    if isinstance(key, rsa.RSAPublicKey):
        return ["RS256"]
    return []


#: What the caller is told for each kind of rejected token; the first class that matches wins.
_TOKEN_MESSAGES: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.ExpiredSignatureError, "token has expired"),
    (jwt.ImmatureSignatureError, "token is not valid yet"),
    (jwt.InvalidAudienceError, "token audience is not accepted"),
    (jwt.InvalidIssuerError, "token issuer is not accepted"),
    (jwt.InvalidSignatureError, "token signature is invalid"),
    (jwt.InvalidAlgorithmError, "token algorithm is not allowed for its key"),
    (jwt.DecodeError, "token is malformed"),
)


def _message_for(exc: jwt.PyJWTError) -> str:
    """A message about a rejected token that is safe to show to the caller."""
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"token has no {exc.claim} claim"
    return next(
        (text for kind, text in _TOKEN_MESSAGES if isinstance(exc, kind)), "token is invalid"
    )


class TokenVerifier:
    """Checks Supabase access tokens against the project's JWKS and optional HS256 secret.

    The JWKS is fetched lazily, cached for `jwks_cache_seconds`, and fetched again at most once
    per `jwks_refresh_cooldown_seconds` when a token names a key id the cache does not hold (a
    rotated key). Verification blocks on that fetch, so call `verify` from sync code (FastAPI
    runs sync dependencies in its thread pool).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        leeway_seconds: float = 30,
        jwks_cache_seconds: float = 300,
        jwks_refresh_cooldown_seconds: float = 30,
        jwks_timeout_seconds: float = 5,
    ) -> None:
        self.issuer = settings.jwt_issuer
        self.jwks_url = settings.jwks_url
        self.leeway_seconds = leeway_seconds
        secret = settings.supabase_jwt_secret
        self._hs256_secret: str | None = secret.get_secret_value() if secret else None
        # No per-kid cache (`cache_keys`): it never expires, so a key revoked from the JWKS
        # would stay trusted. The JWK set cache below expires and is cheap to read.
        self._jwks = jwt.PyJWKClient(
            self.jwks_url,
            cache_keys=False,
            cache_jwk_set=True,
            lifespan=jwks_cache_seconds,
            timeout=jwks_timeout_seconds,
            cooldown_duration=jwks_refresh_cooldown_seconds,
        )

    @property
    def accepts_hs256(self) -> bool:
        """Whether the legacy shared secret is configured."""
        return self._hs256_secret is not None

    def verify(self, token: str) -> Principal:
        """Verify `token` and return who it names; raise `AuthError` with a safe message.

        Raises `AuthUnavailableError` when the JWKS cannot be fetched.
        """
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthError("token is malformed") from None

        # The header only routes the token to a key; the algorithms allowed are fixed by the
        # key, so a forged header cannot change how the signature is checked.
        if header.get("alg") == "HS256":
            if self._hs256_secret is None:
                raise AuthError("HS256 tokens are not accepted")
            key: Any = self._hs256_secret
            algorithms = ["HS256"]
        else:
            key = self._public_key(header.get("kid"))
            algorithms = allowed_algorithms(key)
            if not algorithms:
                raise AuthError("token signing key type is not supported")

        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                audience=AUTHENTICATED,
                issuer=self.issuer,
                leeway=self.leeway_seconds,
                options={"require": list(REQUIRED_CLAIMS)},
            )
        except jwt.PyJWTError as exc:
            raise AuthError(_message_for(exc)) from None
        return principal_from_claims(claims)

    def _public_key(self, kid: object) -> Any:
        """The JWKS public key named by `kid` (refetching the JWKS once if it is unknown)."""
        if not isinstance(kid, str) or not kid:
            raise AuthError("token has no key id")
        try:
            return self._jwks.get_signing_key(kid).key
        except jwt.PyJWKClientConnectionError as exc:
            logger.warning("JWKS fetch from %s failed: %s", self.jwks_url, exc)
            raise AuthUnavailableError("signing keys are unavailable; try again later") from None
        except jwt.PyJWKClientError:
            raise AuthError("token signing key is not known") from None
        except jwt.PyJWTError as exc:
            # A JWKS with no usable keys (a project still on the HS256 secret publishes an
            # empty set) cannot verify this token: that is the token's problem, not an outage.
            logger.info("JWKS at %s has no usable key for kid %r: %s", self.jwks_url, kid, exc)
            raise AuthError("token signing key is not known") from None


def principal_from_claims(claims: dict[str, Any]) -> Principal:
    """Check the Supabase-specific claims of verified `claims` and build the `Principal`.

    Only signed-in users (`role` "authenticated") are accepted: service_role and anon keys are
    for servers and the public, not for acting as a user. `sub` must be a user id, spelled
    as Supabase writes it (`api.decoding.canonical_user_id`).
    """
    role = claims.get("role")
    if role != AUTHENTICATED:
        raise AuthError("token role is not accepted")
    user_id = canonical_user_id(claims.get("sub"))
    if user_id is None:
        raise AuthError("token subject is not a user id")
    email = claims.get("email")
    return Principal(
        user_id=user_id,
        email=email if isinstance(email, str) and email else None,
        role=role,
        claims=claims,
    )


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header value; `AuthError` otherwise."""
    if not authorization or not authorization.strip():
        raise AuthError("missing bearer token", error=None)
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        # Other schemes carry no bearer credentials: a bare challenge, as for a missing header.
        raise AuthError("authorization must use the Bearer scheme", error=None)
    token = token.strip()
    if not token:
        raise AuthError("missing bearer token")
    return token


#: Declares the Bearer scheme in the OpenAPI document (add it to routes with
#: `Security(openapi_bearer_scheme)`); parsing and errors stay ours.
openapi_bearer_scheme = HTTPBearer(auto_error=False, bearerFormat="JWT", scheme_name="SupabaseJWT")
