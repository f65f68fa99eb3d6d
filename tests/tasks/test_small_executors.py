"""The registry and the small executors: delay, json_transform, edge_function."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from engine.errors import ConfigurationError, ErrorKind, StepError
from engine.settings import Settings
from tasks.context import StepContext
from tasks.registry import CATALOG, EXECUTORS, get_executor


def test_every_transformer_type_has_an_executor() -> None:
    """Each type's target_function is registered, and nothing else is."""
    assert set(EXECUTORS) == {t.target_function for t in CATALOG.types.values()}


def test_unknown_executor() -> None:
    """An unknown target_function is a ConfigurationError listing the known ones."""
    with pytest.raises(ConfigurationError) as info:
        get_executor("execute-nothing")
    assert "execute-delay" in info.value.message


def test_delay_returns_input(ctx: StepContext) -> None:
    """execute-delay passes its input through."""
    config = CATALOG.parse_config("delay", {"seconds": 0})
    assert get_executor("execute-delay")(config, {"a": [1]}, ctx) == {"a": [1]}


def test_json_transform(ctx: StepContext) -> None:
    """The template is rendered over {input, job}; literals stay literal."""
    config = CATALOG.parse_config(
        "json_transform",
        {
            "template": {
                "first.$": "$.input.segments[0].text",
                "all.$": "$.input.segments[*].speaker",
                "job.$": "$.job.id",
                "literal": "$.not.a.path",
            }
        },
    )
    step_input = {"segments": [{"text": "hi", "speaker": "A"}, {"text": "yo", "speaker": "B"}]}
    out = get_executor("execute-json-transform")(config, step_input, ctx)
    assert out == {"first": "hi", "all": ["A", "B"], "job": ctx.job_id, "literal": "$.not.a.path"}


def test_json_transform_missing_path_is_mapping_error(ctx: StepContext) -> None:
    """A singular path that finds nothing is StepError(MAPPING)."""
    config = CATALOG.parse_config("json_transform", {"template": {"x.$": "$.input.nope"}})
    with pytest.raises(StepError) as info:
        get_executor("execute-json-transform")(config, {}, ctx)
    assert info.value.kind is ErrorKind.MAPPING


@pytest.fixture
def edge_ctx(tmp_path: Path, httpserver: HTTPServer, make_ctx: Any) -> StepContext:
    """A context whose SUPABASE_URL is the local server (not on the allow-list: trusted as
    operator configuration)."""
    settings = Settings(
        _env_file=None,
        data_dir=tmp_path,
        http_allowlist="",
        supabase_url=f"http://127.0.0.1:{httpserver.port}",
        supabase_service_role_key="settings-key",
    )
    ctx: StepContext = make_ctx(settings=settings)
    return ctx


def test_edge_function_call(
    httpserver: HTTPServer, edge_ctx: StepContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """POST /functions/v1/<name> with the bearer key from the variable and the input as JSON."""
    monkeypatch.setenv("TEST_EDGE_KEY", "edge-key")
    httpserver.expect_request(
        "/functions/v1/transcode",
        method="POST",
        json={"a": 1},
        headers={"Authorization": "Bearer edge-key"},
    ).respond_with_json({"done": True})
    config = CATALOG.parse_config(
        "edge_function", {"function_name": "transcode", "api_key_env_var": "TEST_EDGE_KEY"}
    )
    assert get_executor("invoke-edge-function")(config, {"a": 1}, edge_ctx) == {"done": True}


def test_edge_function_key_falls_back_to_settings(
    httpserver: HTTPServer, edge_ctx: StepContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SUPABASE_SERVICE_ROLE_KEY may come from the settings; errors are classified."""
    monkeypatch.delenv("SUPABASE_SERVICE_ROLE_KEY", raising=False)
    httpserver.expect_request(
        "/functions/v1/f", headers={"Authorization": "Bearer settings-key"}
    ).respond_with_data("overloaded", status=503)
    config = CATALOG.parse_config("edge_function", {"function_name": "f"})
    with pytest.raises(StepError) as info:
        get_executor("invoke-edge-function")(config, {}, edge_ctx)
    assert info.value.kind is ErrorKind.SERVER_ERROR


def test_edge_function_missing_key(ctx: StepContext, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unset key variable is CONFIG naming it."""
    monkeypatch.delenv("TEST_EDGE_KEY", raising=False)
    config = CATALOG.parse_config(
        "edge_function", {"function_name": "f", "api_key_env_var": "TEST_EDGE_KEY"}
    )
    with pytest.raises(StepError) as info:
        get_executor("invoke-edge-function")(config, {}, ctx)
    assert info.value.kind is ErrorKind.CONFIG
    assert "TEST_EDGE_KEY" in info.value.message
