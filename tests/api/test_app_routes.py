"""Security stays structural: every route of the real app declares exactly one of the API's
guards (the one user identity check, the operator token, the per-IP limit of public routes, or
the health probe's declared absence of a limit), and every JSON body it accepts is a
`RequestBody` (unknown fields refused)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, get_args

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import BaseModel

from api.app import create_app, routers
from api.deps import (
    ReadPrincipal,
    StartPrincipal,
    limit_anonymous,
    require_operator,
    unlimited_probe,
)
from api.models import RequestBody
from engine.settings import Settings

#: Each guard and the kind of caller it admits.
GUARDS: dict[Callable[..., Any], str] = {
    get_args(ReadPrincipal)[1].dependency: "user",
    get_args(StartPrincipal)[1].dependency: "user",
    require_operator: "operator",
    limit_anonymous: "public",
    unlimited_probe: "probe",
}

#: Every route and who may call it: a new route must be added here, on purpose.
EXPECTED = {
    ("POST", "/workflows/start"): "user",
    ("GET", "/workflows"): "user",
    ("GET", "/workflows/{workflow_id}"): "user",
    ("GET", "/workflows/{workflow_id}/versions/{version}"): "user",
    ("GET", "/jobs"): "user",
    ("GET", "/jobs/{job_id}"): "user",
    ("POST", "/jobs/{job_id}/cancel"): "user",
    ("POST", "/jobs/{job_id}/rerun"): "user",
    ("GET", "/jobs/{job_id}/approvals"): "user",
    ("POST", "/approvals/{approval_id}"): "user",
    ("POST", "/jobs/{job_id}/events/{name}"): "user",
    ("POST", "/schedules"): "user",
    ("GET", "/schedules"): "user",
    ("GET", "/schedules/{schedule_id}"): "user",
    ("PATCH", "/schedules/{schedule_id}"): "user",
    ("DELETE", "/schedules/{schedule_id}"): "user",
    ("GET", "/operator/alerts"): "operator",
    ("GET", "/metrics"): "operator",
    ("GET", "/health"): "probe",
    ("GET", "/auth/v1/.well-known/jwks.json"): "public",
    ("GET", "/docs"): "public",
    ("GET", "/redoc"): "public",
    ("GET", "/docs/assets/swagger-ui-bundle.js"): "public",
    ("GET", "/docs/assets/swagger-ui.css"): "public",
    ("GET", "/docs/assets/redoc.standalone.js"): "public",
    ("GET", "/docs/assets/favicon.png"): "public",
}


def dependency_calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    """Every dependency callable under `dependant`, at any depth."""
    for sub in dependant.dependencies:
        if sub.call is not None:
            yield sub.call
        yield from dependency_calls(sub)


def body_types(dependant: Dependant) -> Iterator[Any]:
    """The declared type of every body parameter under `dependant`."""
    for field in dependant.body_params:
        yield field.field_info.annotation
    for sub in dependant.dependencies:
        yield from body_types(sub)


def served_routes(make_settings: Callable[..., Settings], data_dir: Path) -> list[APIRoute]:
    """The routes of every router the real app serves, with every optional one on (local
    auth's JWKS); the app's OpenAPI document must list exactly their documented ones."""
    settings = make_settings(local_auth=True, data_dir=data_dir)
    routes = [
        route
        for router in routers(settings)
        for route in router.routes
        if isinstance(route, APIRoute)
    ]
    documented = {
        (method.upper(), path)
        for path, operations in create_app(settings).openapi()["paths"].items()
        for method in operations
    }
    assert documented == {
        (method, route.path)
        for route in routes
        if route.include_in_schema
        for method in route.methods
    }
    return routes


def test_every_route_declares_exactly_one_guard(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """Each route is guarded by one of the API's guards, the one its table entry names."""
    seen: dict[tuple[str, str], str] = {}
    for route in served_routes(make_settings, tmp_path):
        kinds = [GUARDS[call] for call in dependency_calls(route.dependant) if call in GUARDS]
        for method in route.methods:
            assert len(kinds) == 1, f"{method} {route.path} declares guards {kinds}, not one"
            seen[(method, route.path)] = kinds[0]
    assert seen == EXPECTED


def test_every_json_body_refuses_unknown_fields(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """Every body a route accepts is a RequestBody, the API's one decoding policy."""
    bodies = 0
    for route in served_routes(make_settings, tmp_path):
        for body in body_types(route.dependant):
            bodies += 1
            assert isinstance(body, type) and issubclass(body, BaseModel), (route.path, body)
            assert issubclass(body, RequestBody), f"{route.path}: {body.__name__}"
            assert body.model_config.get("extra") == "forbid", body.__name__
    assert bodies >= 1
