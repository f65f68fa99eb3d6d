"""Property: whatever a caller sends, the API never answers 5xx and never half-writes a job.

Generated requests go to every operation of the real app (over the test database): JSON
bodies and query values with NUL, lone surrogates (escaped and as raw UTF-8 bytes), non-finite
and oversized numbers, and nesting from shallow to past Python's recursion limit, with and
without a valid token. Each answer must be below 500, be a status the OpenAPI document lists
for that operation, and leave the jobs and job_events tables as they were, except that an
accepted start adds exactly one job and its `created` event.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import psycopg
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from json_texts import any_value, strings, texts, values
from test_app_jobs import row_counts
from test_openapi_responses import documented_statuses

if TYPE_CHECKING:
    from conftest import ApiUser

OPERATOR_TOKEN = "operator-token-for-the-property-test"
#: High enough that no example is refused for its rate (a 429 would hide the input's answer).
UNLIMITED = "start=100000/minute;read=100000/minute;anon=100000/minute;operator=100000/minute"

#: Percent-encoded bytes that are not plain UTF-8 text: NUL, a surrogate, invalid bytes.
RAW_QUERY_BYTES = ["%00", "%ED%A0%80", "%FF", "%C0%80", "a%00b"]

#: Mostly the shipped workflow, so most bodies get as far as the insert.
workflow_ids = st.one_of(
    st.sampled_from(['"demo_offline_v1"'] * 4 + ['"nope"']), strings, any_value
)
input_objects = st.lists(st.tuples(strings, any_value), max_size=4).map(
    lambda pairs: '{"text":"hi"' + "".join(f",{k}:{v}" for k, v in pairs) + "}"
)
start_bodies = st.one_of(
    st.builds(lambda w, i: f'{{"workflow_id":{w},"input_data":{i}}}', workflow_ids, input_objects),
    any_value,
)
cursors = st.one_of(
    values,
    st.builds(
        lambda at, job_id: f"[{at},{job_id}]",
        st.sampled_from(['"2026-01-01T00:00:00+00:00"', '"2026-01-01T00:00:00"', "1"]),
        values,
    ),
).map(lambda text: base64.urlsafe_b64encode(text.encode("utf-8", "surrogatepass")).decode())
query_values = st.one_of(
    texts.filter(lambda t: not any("\ud800" <= ch <= "\udfff" for ch in t)).map(
        lambda t: quote(t, safe="")
    ),
    st.sampled_from(RAW_QUERY_BYTES),
    st.sampled_from(["1", "0", "101", "pending", "done", "open", "all"]),
    cursors.map(lambda c: quote(c, safe="")),
)
#: Names the endpoints read (the free-text ones twice), an unknown one, and a bad one.
query_names = st.sampled_from(
    ["limit", "cursor", "cursor", "status", "workflow_id", "workflow_id", "state", "x", "a%00"]
)
queries = st.lists(st.tuples(query_names, query_values), max_size=3).map(
    lambda pairs: "&".join(f"{k}={v}" for k, v in pairs)
)
job_ids = st.one_of(st.uuids().map(str), query_values)
#: Path values for {workflow_id} and {version}: real ones, missing ones and garbage.
path_workflow_ids = st.one_of(st.sampled_from(["demo_offline_v1", "nope"]), query_values)
path_versions = st.one_of(st.sampled_from(["1", "2", "0", "-1", "2147483648"]), query_values)
#: Mostly a valid user, so most requests get past the identity check to the database.
callers = st.sampled_from(["user", "user", "user", "operator", "nobody", "garbage"])


def headers_for(caller: str, user: ApiUser) -> dict[str, str]:
    """The Authorization header of each kind of caller."""
    tokens = {"user": user.token, "operator": OPERATOR_TOKEN, "garbage": "not.a.token"}
    return {"Authorization": f"Bearer {tokens[caller]}"} if caller in tokens else {}


class Probe:
    """The app under test, the caller's user, and the statuses each operation documents."""

    def __init__(self, client: TestClient, user: ApiUser, db: psycopg.Connection[Any]) -> None:
        self.client = client
        self.user = user
        self.db = db
        self.documented = documented_statuses(client.get("/openapi.json").json())

    def send(
        self,
        method: str,
        template: str,
        url: str,
        caller: str,
        body: str | None = None,
        extra_headers: dict[str, str] | None = None,
    ) -> int:
        """Send one request; check the answer and the row counts; return the status."""
        before = row_counts(self.db)
        headers = {**headers_for(caller, self.user), **(extra_headers or {})}
        content = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            content = body.encode("utf-8", "surrogatepass")
        response = self.client.request(method, url, headers=headers, content=content)
        status = response.status_code
        assert status < 500, (method, url, body and body[:200], response.text[:300])
        assert status in self.documented[(method, template)], (method, template, status)
        if status >= 400:
            assert set(response.json()) == {"error"}, response.text[:200]  # the uniform body
        grown = (1, 1) if (method, status) == ("POST", 201) else (0, 0)
        after = row_counts(self.db)
        assert (after[0] - before[0], after[1] - before[1]) == grown, (url, status)
        return status


PROPERTY_SETTINGS = settings(
    max_examples=80,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
#: Reads are cheap and run once per operation.
READ_SETTINGS = settings(PROPERTY_SETTINGS, max_examples=60)


def make_probe(
    make_client: Callable[..., TestClient],
    make_user: Callable[..., ApiUser],
    db: psycopg.Connection[Any],
) -> Probe:
    """The real app (500s observed, not raised), with limits out of the way."""
    app_client = make_client(rate_limits=UNLIMITED, metrics_token=OPERATOR_TOKEN)
    client = TestClient(app_client.app, raise_server_exceptions=False)
    return Probe(client, make_user(), db)


def test_generated_start_requests_never_fail_the_server(
    make_client: Callable[..., TestClient],
    make_user: Callable[..., ApiUser],
    db: psycopg.Connection[Any],
) -> None:
    """POST /workflows/start with generated bodies, queries and Idempotency-Keys."""
    probe = make_probe(make_client, make_user, db)

    @PROPERTY_SETTINGS
    @given(
        body=start_bodies,
        query=queries,
        caller=st.sampled_from(["user", "user", "user", "nobody"]),
        key=st.one_of(st.none(), st.text("abc", min_size=1, max_size=3)),
    )
    def check(body: str, query: str, caller: str, key: str | None) -> None:
        url = "/workflows/start" + (f"?{query}" if query else "")
        extra = {"Idempotency-Key": key} if key is not None else None
        probe.send("POST", "/workflows/start", url, caller, body, extra)

    check()


GET_OPERATIONS = [
    "/health",
    "/jobs",
    "/jobs/{job_id}",
    "/jobs/{job_id}/approvals",
    "/metrics",
    "/operator/alerts",
    "/schedules",
    "/schedules/{schedule_id}",
    "/workflows",
    "/workflows/{workflow_id}",
    "/workflows/{workflow_id}/versions/{version}",
]


def test_every_get_operation_is_probed(
    make_client: Callable[..., TestClient],
    make_user: Callable[..., ApiUser],
    db: psycopg.Connection[Any],
) -> None:
    """The read property below covers every GET operation the app documents."""
    probe = make_probe(make_client, make_user, db)
    assert sorted(path for method, path in probe.documented if method == "GET") == GET_OPERATIONS


@pytest.mark.parametrize("template", GET_OPERATIONS)
def test_generated_reads_never_fail_the_server(
    make_client: Callable[..., TestClient],
    make_user: Callable[..., ApiUser],
    db: psycopg.Connection[Any],
    template: str,
) -> None:
    """A GET operation with generated query values, path values and callers."""
    probe = make_probe(make_client, make_user, db)

    @READ_SETTINGS
    @given(
        job_id=job_ids,
        workflow_id=path_workflow_ids,
        version=path_versions,
        query=queries,
        caller=callers,
    )
    def check(job_id: str, workflow_id: str, version: str, query: str, caller: str) -> None:
        path = template.replace("{job_id}", job_id).replace("{workflow_id}", workflow_id)
        path = path.replace("{schedule_id}", job_id)
        url = path.replace("{version}", version) + (f"?{query}" if query else "")
        probe.send("GET", template, url, caller)

    check()
