"""The input policy on the real app: bodies, parameters, cursors and token subjects that used
to give 500 now give 422 (or 401) in the uniform error body, naming the field, and write
nothing; and the policy is installed on every route, not route by route."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from test_app_jobs import assert_error_shape, row_counts
from tokens import JwksEndpoint, SigningKey, bearer, supabase_claims

from api.strict_input import OFF_LOOP_BYTES

if TYPE_CHECKING:
    from conftest import ApiUser

SOME_UUID = "5b1f8f0e-2f5e-4b8e-9d0a-0c1d2e3f4a5b"
START_OK = '{"workflow_id": "demo_offline_v1", "input_data": {"text": "hello"'


def start_raw(client: TestClient, user: ApiUser, raw: str, **headers: str) -> Any:
    """POST /workflows/start with `raw` as the body (lone surrogates kept as written)."""
    return client.post(
        "/workflows/start",
        content=raw.encode("utf-8", "surrogatepass"),
        headers={**user.headers, "Content-Type": "application/json", **headers},
    )


def problem_locations(response: Any) -> list[tuple[str, str]]:
    """(location, type) of each detail of a 422 `invalid_request` answer."""
    assert response.status_code == 422, response.text
    error = assert_error_shape(response.json(), "invalid_request")
    return [(d["location"], d["type"]) for d in error["details"]]


def documented_operations(client: TestClient) -> list[tuple[str, str, bool]]:
    """(method, concrete path, takes a body) of every operation in the app's OpenAPI
    document, path parameters filled with a UUID."""
    doc = client.get("/openapi.json").json()
    return [
        (method.upper(), path.replace("{job_id}", SOME_UUID), "requestBody" in operation)
        for path, operations in doc["paths"].items()
        for method, operation in operations.items()
    ]


def test_every_route_is_under_the_input_policy(make_client: Callable[..., TestClient]) -> None:
    """The policy is app-wide, not per route: on every documented operation a NUL in any query
    parameter is 422 naming it, and every operation that takes a body refuses NaN in it,
    before authentication (no token is sent)."""
    client = make_client(metrics_token="operator-token")
    operations = documented_operations(client)
    assert len(operations) >= 7 and any(body for _, _, body in operations)
    for method, path, takes_body in operations:
        response = client.request(method, path + "?anything=%00")
        assert problem_locations(response) == [("query.anything", "nul_character")], path
        if takes_body:
            response = client.request(
                method, path, content=b'{"a": NaN}', headers={"Content-Type": "application/json"}
            )
            assert problem_locations(response) == [("body.a", "non_finite_number")], path


@pytest.mark.parametrize(
    ("raw", "location", "kind"),
    [
        (START_OK + ', "note": "a\\u0000b"}}', "body.input_data.note", "nul_character"),
        (START_OK + ', "k\\u0000": 1}}', "body.input_data.k\\u0000", "nul_character"),
        ('{"workflow_id": "demo\\u0000", "input_data": {}}', "body.workflow_id", "nul_character"),
        (START_OK + ', "n": NaN}}', "body.input_data.n", "non_finite_number"),
        (START_OK + ', "n": Infinity}}', "body.input_data.n", "non_finite_number"),
        (START_OK + ', "n": -Infinity}}', "body.input_data.n", "non_finite_number"),
        (START_OK + ', "n": 1e400}}', "body.input_data.n", "non_finite_number"),
        (START_OK + ', "s": "\\ud800"}}', "body.input_data.s", "lone_surrogate"),
        (START_OK + ', "\\ud800": 1}}', "body.input_data.\\ud800", "lone_surrogate"),
    ],
    ids=[
        "nul-value",
        "nul-key",
        "nul-workflow-id",
        "nan",
        "infinity",
        "minus-infinity",
        "overflow",
        "surrogate-value",
        "surrogate-key",
    ],
)
def test_unstorable_body_values_are_422_and_write_nothing(
    client: TestClient,
    make_user: Callable[..., ApiUser],
    db: psycopg.Connection[Any],
    raw: str,
    location: str,
    kind: str,
) -> None:
    """What PostgreSQL's jsonb refuses is refused first: 422 naming the field (it was 500)."""
    response = start_raw(client, make_user(), raw, **{"Idempotency-Key": "k1"})
    assert problem_locations(response) == [(location, kind)]
    assert row_counts(db) == (0, 0)


def test_large_bodies_are_checked_the_same_way(
    client: TestClient, make_user: Callable[..., ApiUser], db: psycopg.Connection[Any]
) -> None:
    """A body past OFF_LOOP_BYTES (decoded in the thread pool) gets the same answers."""
    user = make_user()
    padding = '"' + "x" * (OFF_LOOP_BYTES + 10) + '"'
    bad = start_raw(client, user, START_OK + f', "pad": {padding}, "n": NaN}}}}')
    assert problem_locations(bad) == [("body.input_data.n", "non_finite_number")]
    assert row_counts(db) == (0, 0)
    good = start_raw(client, user, START_OK + f', "pad": {padding}}}}}')
    assert good.status_code == 201, good.text
    assert row_counts(db) == (1, 1)


@pytest.mark.parametrize("depth", [65, 256, 500, 999, 3000])
def test_deep_input_data_is_422_and_writes_nothing(
    client: TestClient, make_user: Callable[..., ApiUser], db: psycopg.Connection[Any], depth: int
) -> None:
    """A body nested deeper than API_MAX_JSON_DEPTH (64) is 422 `too_deeply_nested`, with an
    Idempotency-Key too (256..999 levels used to fail the fingerprint with a 500)."""
    deep = "[" * (depth - 2) + "]" * (depth - 2)
    response = start_raw(
        client, make_user(), START_OK + ', "d": ' + deep + "}}", **{"Idempotency-Key": "deep"}
    )
    [(location, kind)] = problem_locations(response)
    assert kind == "too_deeply_nested" and location.startswith("body")
    assert row_counts(db) == (0, 0)


def test_nesting_at_the_limit_is_accepted_and_the_limit_is_a_setting(
    make_client: Callable[..., TestClient],
    make_user: Callable[..., ApiUser],
    db: psycopg.Connection[Any],
) -> None:
    """64 levels (the body counting as one) start a job; API_MAX_JSON_DEPTH=8 lowers it."""
    user = make_user()
    at_limit = START_OK + ', "d": ' + "[" * 62 + "]" * 62 + "}}"
    response = start_raw(make_client(), user, at_limit, **{"Idempotency-Key": "at-limit"})
    assert response.status_code == 201, response.text
    assert row_counts(db) == (1, 1)

    strict = make_client(api_max_json_depth=8)
    too_deep = START_OK + ', "d": [[[[[[[]]]]]]]}}'
    assert problem_locations(start_raw(strict, user, too_deep)) == [
        ("body.input_data.d.0.0.0.0.0.0", "too_deeply_nested")
    ]


@pytest.mark.parametrize(
    ("query", "location"),
    [
        ("workflow_id=demo%00", "query.workflow_id"),
        ("status=pending%00", "query.status"),
        ("cursor=%00", "query.cursor"),
        ("limit=1%00", "query.limit"),
        ("unknown%00=1", "query.unknown\\u0000"),
    ],
    ids=["workflow-id", "status", "cursor", "limit", "parameter-name"],
)
def test_nul_in_a_query_value_is_422_naming_it(
    client: TestClient, make_user: Callable[..., ApiUser], query: str, location: str
) -> None:
    """A NUL in any query parameter of GET /jobs is 422 naming the parameter (it was 500)."""
    response = client.get("/jobs?" + query, headers=make_user().headers)
    assert problem_locations(response) == [(location, "nul_character")]


def cursor_of(parts: Any) -> str:
    """A cursor in GET /jobs's encoding holding `parts`."""
    return base64.urlsafe_b64encode(json.dumps(parts).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "parts",
    [
        ["2026-01-01T00:00:00+00:00", ["x"]],
        ["2026-01-01T00:00:00+00:00", 42],
        ["2026-01-01T00:00:00+00:00", {"a": 1}],
        [["2026"], SOME_UUID],
        ["2026-01-01T00:00:00", SOME_UUID],
    ],
    ids=["id-list", "id-number", "id-object", "time-list", "time-without-offset"],
)
def test_tampered_cursor_types_are_422_naming_cursor(
    client: TestClient, make_user: Callable[..., ApiUser], parts: Any
) -> None:
    """A cursor whose decoded parts have the wrong types is 422 on `cursor` (it was 500)."""
    response = client.get("/jobs", params={"cursor": cursor_of(parts)}, headers=make_user().headers)
    assert problem_locations(response) == [("query.cursor", "value_error")]


USER_ROUTES = [
    ("GET", "/jobs"),
    ("GET", "/workflows"),
    ("GET", f"/jobs/{SOME_UUID}"),
    ("POST", "/workflows/start"),
]


@pytest.mark.parametrize(
    "spell",
    [str.upper, lambda u: "{" + u + "}", lambda u: "urn:uuid:" + u, lambda u: u.replace("-", "")],
    ids=["upper-case", "braces", "urn", "no-hyphens"],
)
def test_subject_in_another_spelling_is_401_on_every_user_route(
    client: TestClient,
    make_user: Callable[..., ApiUser],
    jwks: JwksEndpoint,
    es_key: SigningKey,
    db: psycopg.Connection[Any],
    spell: Callable[[str], str],
) -> None:
    """A validly signed token whose `sub` spells an existing user's id another way is 401 on
    every user route (reads used to fail with 500), and starts nothing."""
    user = make_user()
    token = es_key.sign(supabase_claims(issuer=jwks.issuer, user_id=spell(user.user_id)))
    for method, path in USER_ROUTES:
        body = {"workflow_id": "demo_offline_v1", "input_data": {"text": "x"}}
        response = client.request(
            method, path, headers=bearer(token), json=body if method == "POST" else None
        )
        assert response.status_code == 401, (method, path, response.text)
        assert "subject" in assert_error_shape(response.json(), "unauthorized")["message"]
    assert row_counts(db) == (0, 0)
