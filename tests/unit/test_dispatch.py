"""engine.dispatch.RunStarter, the one run starter: what it asks Prefect for, what a failure
means, whose client it closes, and that the API's fail-fast client tries a refused connection
only once (no Prefect server needed)."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from prefect.client.orchestration import SyncPrefectClient

from engine.dispatch import RunStarter

DEPLOYMENT = "run-workflow/run-workflow"


@dataclass
class FakeClient:
    """Records what a RunStarter asks of Prefect's client; `fail` makes every call raise."""

    fail: bool = False
    lookups: list[str] = field(default_factory=list)
    created: list[dict[str, Any]] = field(default_factory=list)
    closed: bool = False
    deployment_id: uuid.UUID = field(default_factory=uuid.uuid4)

    def read_deployment_by_name(self, name: str) -> Any:
        self.lookups.append(name)
        if self.fail:
            raise ConnectionError("Prefect is down")
        return type("Deployment", (), {"id": self.deployment_id})()

    def create_flow_run_from_deployment(self, deployment_id: uuid.UUID, **kwargs: Any) -> Any:
        if self.fail:
            raise ConnectionError("Prefect is down")
        self.created.append({"deployment_id": deployment_id, **kwargs})
        return type("FlowRun", (), {"id": uuid.uuid4()})()

    def api_healthcheck(self) -> Exception | None:
        return ConnectionError("Prefect is down") if self.fail else None

    def __exit__(self, *exc_info: Any) -> None:
        self.closed = True


def starter_on(client: FakeClient) -> RunStarter:
    """A RunStarter borrowing `client`, as a maintenance pass builds one."""
    return RunStarter(cast(SyncPrefectClient, client), DEPLOYMENT)


def test_runs_are_keyed_by_job_and_the_deployment_is_looked_up_once() -> None:
    """Each job's run carries the job id as parameter and (by default) as idempotency key;
    one deployment lookup serves every run; an explicit key and state are passed through."""
    client = FakeClient()
    starter = starter_on(client)
    assert starter.try_start("job-1") is not None
    starter.create("job-2", idempotency_key="job-2:resubmit-1", state="scheduled")
    assert client.lookups == [DEPLOYMENT]
    assert client.created == [
        {
            "deployment_id": client.deployment_id,
            "parameters": {"job_id": "job-1"},
            "idempotency_key": "job-1",
            "state": None,
        },
        {
            "deployment_id": client.deployment_id,
            "parameters": {"job_id": "job-2"},
            "idempotency_key": "job-2:resubmit-1",
            "state": "scheduled",
        },
    ]


def test_a_failed_start_is_none_and_the_deployment_is_looked_up_again() -> None:
    """Prefect down: try_start answers None (the job stays pending) and forgets the
    deployment, so the next start finds a redeployed one; healthy() is False meanwhile."""
    client = FakeClient()
    starter = starter_on(client)
    assert starter.try_start("job-1") is not None
    client.fail = True
    assert starter.try_start("job-2") is None
    assert starter.healthy() is False
    client.fail = False
    assert starter.try_start("job-3") is not None
    assert starter.healthy() is True
    assert client.lookups == [DEPLOYMENT, DEPLOYMENT]


def test_a_borrowed_client_stays_open_after_close() -> None:
    """close() closes only a client the starter opened itself, never the caller's."""
    client = FakeClient()
    starter = starter_on(client)
    starter.close()
    assert client.closed is False
    assert starter.client is cast(SyncPrefectClient, client)


@pytest.fixture
def closed_port_url() -> str:
    """A Prefect API URL on a local port that was free a moment ago (nothing listens)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/api"


@pytest.fixture
def connection_attempts(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Every TCP connection attempt made while the test runs (httpcore's sync backend opens
    its connections with socket.create_connection)."""
    attempts: list[Any] = []
    real: Callable[..., socket.socket] = socket.create_connection

    def counting(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
        attempts.append(address)
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", counting)
    yield attempts


def test_fail_fast_starter_tries_a_refused_connection_once(
    closed_port_url: str, connection_attempts: list[Any]
) -> None:
    """The API's starter (fail_fast) gives up on the first refused connection: one attempt
    per call, where Prefect's own client would retry it 3 times."""
    starter = RunStarter.own_client(DEPLOYMENT, api_url=closed_port_url, fail_fast=True)
    try:
        assert starter.try_start(str(uuid.uuid4())) is None
        assert len(connection_attempts) == 1
        assert starter.healthy() is False
        assert len(connection_attempts) == 2
    finally:
        starter.close()


def test_without_fail_fast_prefect_retries_a_refused_connection(
    closed_port_url: str, connection_attempts: list[Any]
) -> None:
    """The contrast that makes the test above mean something: Prefect's default client
    retries a refused connection 3 times (4 attempts), so turning that off is our doing."""
    starter = RunStarter.own_client(DEPLOYMENT, api_url=closed_port_url)
    try:
        assert starter.healthy() is False
        assert len(connection_attempts) == 4
    finally:
        starter.close()
