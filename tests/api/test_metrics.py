"""GET /metrics (Prometheus) and GET /operator/alerts on the real app and a real database."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import psycopg
import pytest
from dbfixtures import create_user
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from psycopg.types.json import Jsonb

from api.app import create_app
from api.metrics import METRIC_NAMES
from engine.db.restarts import record_restart
from engine.db.store import JobStore
from engine.dispatch import RunStarter
from engine.settings import Settings

TOKEN = "metrics-operator-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def build(
    make_settings: Callable[..., Settings],
    job_store: JobStore,
    closed_starter: RunStarter,
) -> Iterator[Callable[..., TestClient]]:
    """The real app (create_app wires the metrics and operator routes)."""
    with ExitStack() as stack:

        def make(*, store: JobStore | None = None, **overrides: Any) -> TestClient:
            settings = make_settings(**overrides)
            app = create_app(settings, store=store or job_store, starter=closed_starter)
            return stack.enter_context(TestClient(app, raise_server_exceptions=False))

        yield make


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Parsed exposition: sample name -> [(labels, value)]."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((dict(s.labels), float(s.value)))
    return out


def value(parsed: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    """The value of the one sample of `name` whose labels include `labels`."""
    matches = [v for lab, v in parsed.get(name, []) if labels.items() <= lab.items()]
    assert len(matches) == 1, (name, labels, parsed.get(name))
    return matches[0]


@pytest.mark.parametrize(
    ("headers", "status", "challenge_error"),
    [
        ({}, 401, None),
        ({"Authorization": "Basic abc"}, 401, None),
        ({"Authorization": "Bearer wrong-token"}, 401, "invalid_token"),
        (AUTH, 200, None),
    ],
)
def test_metrics_requires_the_token(
    build: Callable[..., TestClient],
    headers: dict[str, str],
    status: int,
    challenge_error: str | None,
) -> None:
    """With METRICS_TOKEN set, only its Bearer token reads /metrics; failures use the uniform
    error body and a Bearer challenge."""
    client = build(metrics_token=TOKEN)
    response = client.get("/metrics", headers=headers)
    assert response.status_code == status
    if status == 401:
        assert response.json()["error"]["code"] == "unauthorized"
        challenge = response.headers["WWW-Authenticate"]
        assert challenge.startswith("Bearer")
        assert (f'error="{challenge_error}"' in challenge) is (challenge_error is not None)
        assert TOKEN not in response.text
    else:
        assert response.headers["content-type"].startswith("text/plain")


def test_metrics_closed_without_configured_token(
    build: Callable[..., TestClient], make_user: Callable[..., Any]
) -> None:
    """Without METRICS_TOKEN, /metrics is closed to everyone, signed-in users included: 403
    with a message naming the setting (the metrics show every tenant's workflows)."""
    client = build(metrics_token=None)
    for headers in ({}, make_user().headers, AUTH):
        response = client.get("/metrics", headers=headers)
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "forbidden"
        assert "METRICS_TOKEN" in response.json()["error"]["message"]
    assert "supaflow_jobs" not in response.text


def test_metrics_expose_every_name_and_current_numbers(
    build: Callable[..., TestClient], job_store: JobStore, db: psycopg.Connection[Any]
) -> None:
    """Every metric name is exposed, and database metrics reflect the rows at scrape time."""
    client = build(metrics_token=TOKEN)
    user = create_user(db)
    job = job_store.create_job(
        user_id=user, workflow_id="demo_offline_v1", input_data={"text": "x"}
    )
    db.execute(
        "insert into public.alerts (kind, subject, severity, message) "
        "values ('slow_queue', 'pending', 'warning', 'slow')"
    )
    record_restart(job_store.pool, "warm-worker", "host-a", -9)
    record_restart(job_store.pool, "warm-worker", "host-a", 1)
    client.get("/health")
    text = client.get("/metrics", headers=AUTH).text
    for name in METRIC_NAMES:
        assert f"# TYPE {name} " in text, name
    parsed = samples(text)
    assert value(parsed, "supaflow_metrics_database_up") == 1.0
    assert value(parsed, "supaflow_jobs", workflow_id="demo_offline_v1", status="pending") == 1.0
    assert value(parsed, "supaflow_queue_length", status="pending") == 1.0
    assert value(parsed, "supaflow_queue_length", status="awaiting_retry") == 0.0
    assert value(parsed, "supaflow_alerts_open", kind="slow_queue", severity="warning") == 1.0
    assert value(parsed, "supaflow_service_restarts_total", service="warm-worker") == 2.0

    # The job finishes: the counters, rates and the duration histogram follow.
    db.execute(
        "update public.jobs set status = 'completed', started_at = created_at, "
        "completed_at = created_at + interval '3 seconds' where id = %s",
        [job.id],
    )
    parsed = samples(client.get("/metrics", headers=AUTH).text)
    wf = {"workflow_id": "demo_offline_v1"}
    assert value(parsed, "supaflow_jobs_finished_total", status="completed", **wf) == 1.0
    assert value(parsed, "supaflow_job_completion_rate", **wf) == 1.0
    assert value(parsed, "supaflow_job_failure_rate", **wf) == 0.0
    assert value(parsed, "supaflow_job_duration_average_seconds", **wf) == pytest.approx(3.0)
    assert value(parsed, "supaflow_job_duration_seconds_count", status="completed", **wf) == 1.0
    assert value(parsed, "supaflow_job_duration_seconds_sum", status="completed", **wf) == (
        pytest.approx(3.0)
    )
    assert value(parsed, "supaflow_job_duration_seconds_bucket", le="2.5", **wf) == 0.0
    assert value(parsed, "supaflow_job_duration_seconds_bucket", le="5.0", **wf) == 1.0


def test_response_time_histogram_is_labelled_by_route_template(
    build: Callable[..., TestClient], make_user: Callable[..., Any]
) -> None:
    """API response times carry the route template (not the raw path), method and status;
    unknown paths share one 'unmatched' label."""
    client = build(metrics_token=TOKEN)
    user = make_user()
    for _ in range(2):
        assert client.get(f"/jobs/{uuid.uuid4()}", headers=user.headers).status_code == 404
    assert client.get("/no/such/path").status_code == 404
    parsed = samples(client.get("/metrics", headers=AUTH).text)
    name = "supaflow_api_request_duration_seconds_count"
    assert value(parsed, name, route="/jobs/{job_id}", method="GET", status="404") == 2.0
    assert value(parsed, name, route="unmatched", method="GET", status="404") == 1.0
    routes = {labels["route"] for labels, _ in parsed[name]}
    assert not any(r.startswith("/jobs/") and r != "/jobs/{job_id}" for r in routes)


def test_database_down_reads_as_up_zero(
    build: Callable[..., TestClient], database_url: str
) -> None:
    """When the views cannot be read, /metrics still answers, with database_up 0."""
    broken = JobStore(database_url, max_size=1)
    broken.close()
    client = build(store=broken, metrics_token=TOKEN)
    response = client.get("/metrics", headers=AUTH)
    assert response.status_code == 200
    parsed = samples(response.text)
    assert value(parsed, "supaflow_metrics_database_up") == 0.0
    assert "supaflow_api_request_duration_seconds" in response.text


# --- operator alerts -------------------------------------------------------------------------


def _insert_alert(db: psycopg.Connection[Any], kind: str, subject: str, resolved: bool) -> None:
    db.execute(
        "insert into public.alerts (kind, subject, severity, message, detail, resolved_at) "
        "values (%s, %s, 'critical', 'm', %s, case when %s then now() end)",
        [kind, subject, Jsonb({"n": 1}), resolved],
    )


@pytest.mark.parametrize(
    ("state", "subjects"),
    [
        (None, ["open-2", "open-1"]),
        ("open", ["open-2", "open-1"]),
        ("resolved", ["gone"]),
        ("all", ["open-2", "gone", "open-1"]),
    ],
)
def test_operator_alerts_by_state(
    build: Callable[..., TestClient],
    db: psycopg.Connection[Any],
    state: str | None,
    subjects: list[str],
) -> None:
    """GET /operator/alerts lists open (default), resolved or all alerts, newest first."""
    _insert_alert(db, "config_error", "open-1", False)
    _insert_alert(db, "config_error", "gone", True)
    _insert_alert(db, "high_failure_rate", "open-2", False)
    client = build(metrics_token=TOKEN)
    params = {"state": state} if state else {}
    response = client.get("/operator/alerts", params=params, headers=AUTH)
    assert response.status_code == 200
    alerts = response.json()["alerts"]
    assert [a["subject"] for a in alerts] == subjects
    assert alerts[0]["detail"] == {"n": 1}


@pytest.mark.parametrize(
    ("configured", "headers", "status", "code"),
    [
        (None, AUTH, 403, "forbidden"),  # disabled without a configured token
        (TOKEN, {}, 401, "unauthorized"),
        (TOKEN, {"Authorization": "Bearer nope"}, 401, "unauthorized"),
    ],
)
def test_operator_alerts_require_the_operator_token(
    build: Callable[..., TestClient],
    make_user: Callable[..., Any],
    configured: str | None,
    headers: dict[str, str],
    status: int,
    code: str,
) -> None:
    """Only the operator token opens operator endpoints; errors use the uniform body."""
    client = build(metrics_token=configured)
    response = client.get("/operator/alerts", headers=headers)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


def test_operator_alerts_refuse_user_tokens_and_bad_state(
    build: Callable[..., TestClient], make_user: Callable[..., Any]
) -> None:
    """A valid user JWT is not an operator credential; an unknown state is a 422."""
    client = build(metrics_token=TOKEN)
    assert client.get("/operator/alerts", headers=make_user().headers).status_code == 401
    response = client.get("/operator/alerts", params={"state": "closed"}, headers=AUTH)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"
