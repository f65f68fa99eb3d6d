"""Fixtures for the API building-block tests: a real JWKS server on 127.0.0.1, signing keys,
settings pointing at it, and tiny FastAPI apps wired with the pieces under test."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from pytest_httpserver import HTTPServer
from tokens import (
    JwksEndpoint,
    SigningKey,
    new_es256_key,
    new_rs256_key,
)

from api.auth import TokenVerifier
from engine.settings import Settings

REDIS_TEST_URL = "redis://127.0.0.1:6379/15"


@pytest.fixture(scope="session")
def es_key() -> SigningKey:
    """An ES256 key published in the JWKS."""
    return new_es256_key("es-current")


@pytest.fixture(scope="session")
def rs_key() -> SigningKey:
    """An RS256 key published in the JWKS."""
    return new_rs256_key("rs-current")


@pytest.fixture
def jwks(httpserver_ipv4: HTTPServer, es_key: SigningKey, rs_key: SigningKey) -> JwksEndpoint:
    """The project's JWKS endpoint, publishing the ES256 and the RS256 key."""
    endpoint = JwksEndpoint(httpserver_ipv4)
    endpoint.publish(es_key, rs_key)
    return endpoint


@pytest.fixture
def make_settings(jwks: JwksEndpoint) -> Callable[..., Settings]:
    """Build Settings for the local JWKS server, ignoring the environment and `.env`."""

    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "supabase_url": jwks.base_url,
            "supabase_jwks_url": None,
            "supabase_jwt_secret": None,
            "redis_url": None,
            **overrides,
        }
        return Settings(_env_file=None, **values)

    return build


@pytest.fixture
def verifier(make_settings: Callable[..., Settings]) -> TokenVerifier:
    """A verifier against the local JWKS that refetches at once on an unknown kid."""
    return TokenVerifier(make_settings(), jwks_refresh_cooldown_seconds=0)


@pytest.fixture
def redis_namespace() -> Iterator[str]:
    """A rate-limit namespace unique to one test in Redis db 15; its keys are deleted after."""
    namespace = f"test-{uuid.uuid4().hex}"
    yield namespace
    client = redis.Redis.from_url(REDIS_TEST_URL)
    try:
        keys = list(client.scan_iter(match=f"*{namespace}*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
