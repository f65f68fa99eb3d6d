"""Fixtures for the API tests: a real JWKS server on 127.0.0.1, signing keys, settings pointing
at it, tiny FastAPI apps wired with the pieces under test, and the real app (`create_app`) on a
fresh migrated database with the shipped definitions synced."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
import redis
import uvicorn
from dbfixtures import create_user
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pytest_httpserver import HTTPServer
from tokens import (
    JwksEndpoint,
    SigningKey,
    bearer,
    new_es256_key,
    new_rs256_key,
    supabase_claims,
)

from api.app import create_app
from api.auth import TokenVerifier
from api.server import SERVER_OPTIONS
from cli.definition_files import sync_definitions
from engine.db.store import JobStore
from engine.dispatch import RunStarter
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


# --- the real app ------------------------------------------------------------------------------

#: A Prefect API URL on a port nothing listens on: the real "Prefect unreachable" case.
CLOSED_PREFECT_API_URL = "http://127.0.0.1:9/api"
#: The deployment of job runs (prefect.yaml: flow `run-workflow`, deployment `run-workflow`).
RUN_WORKFLOW_DEPLOYMENT = "run-workflow/run-workflow"


@dataclass(frozen=True)
class ApiUser:
    """A Supabase user that exists in auth.users, with a valid ES256 access token."""

    user_id: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        """The Authorization header of this user's requests."""
        return bearer(self.token)


@pytest.fixture
def job_store(database_url: str) -> Iterator[JobStore]:
    """A real JobStore on the test's database, with the shipped definitions synced."""
    store = JobStore(database_url, max_size=4)
    try:
        sync_definitions(store)
        yield store
    finally:
        store.close()


@pytest.fixture
def closed_starter() -> Iterator[RunStarter]:
    """The API's run starter (failing fast) aimed at a closed port: every start leaves the job
    pending."""
    starter = RunStarter.own_client(
        RUN_WORKFLOW_DEPLOYMENT, api_url=CLOSED_PREFECT_API_URL, fail_fast=True
    )
    yield starter
    starter.close()


@pytest.fixture
def make_user(
    db: psycopg.Connection[Any], jwks: JwksEndpoint, es_key: SigningKey
) -> Callable[..., ApiUser]:
    """Create a user in auth.users and sign them an ES256 token from the local JWKS's key."""

    def build(**claim_overrides: Any) -> ApiUser:
        user_id = create_user(db)
        claims = supabase_claims(issuer=jwks.issuer, user_id=user_id, **claim_overrides)
        return ApiUser(user_id, es_key.sign(claims))

    return build


@pytest.fixture
def make_client(
    make_settings: Callable[..., Settings],
    job_store: JobStore,
    closed_starter: RunStarter,
) -> Iterator[Callable[..., TestClient]]:
    """Build the real app and enter a TestClient on it (lifespan runs; closed after the test).

    Defaults: the test's JobStore and the closed-port starter; keyword arguments other than
    `store` and `starter` are Settings overrides (e.g. `rate_limits`, `api_max_body_bytes`).
    """
    with ExitStack() as stack:

        def build(
            *, store: JobStore | None = None, starter: RunStarter | None = None, **overrides: Any
        ) -> TestClient:
            app = create_app(
                make_settings(**overrides),
                store=store or job_store,
                starter=starter or closed_starter,
            )
            return stack.enter_context(TestClient(app))

        yield build


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    """The real app with default settings, the test's store and the closed-port starter."""
    return make_client()


@pytest.fixture
def serve_app() -> Iterator[Callable[[FastAPI], str]]:
    """Serve apps with a real uvicorn on 127.0.0.1 (lifespan included); returns each one's
    base URL. Keep-alive lasts a minute, so a reused connection is closed only by the app's
    answers, never by the idle timeout. Every server is stopped after the test."""
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def serve(app: FastAPI) -> str:
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            log_level="warning",
            timeout_keep_alive=60,
            **SERVER_OPTIONS,  # served as `supaflow api` serves it
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        servers.append((server, thread))
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    yield serve
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=10)
