"""Transformer config models of every type and the catalog's definition checks (pure, no I/O)."""

from __future__ import annotations

from typing import Any

import pytest

from engine.definitions.transformers import template_fields
from engine.errors import DefinitionError
from tasks.delay import DelayConfig
from tasks.gemini import GeminiPromptConfig
from tasks.http_download import HttpDownloadConfig
from tasks.registry import CATALOG

VALID: list[tuple[str, dict[str, Any]]] = [
    ("gemini_prompt", {"prompt_template": "Transcribe this audio."}),
    (
        "gemini_prompt",
        {
            "prompt_template": "Language: {language}. Literal {{braces}}.",
            "model": "gemini-2.5-pro",
            "response_format": "json",
            "response_json_schema": {"type": "object"},
            "temperature": 0.2,
            "max_output_tokens": 8192,
            "base_url": "http://127.0.0.1:9999",
            "retry": {"max_retries": 5, "retry_on": ["rate_limited"]},
        },
    ),
    ("http_download", {}),
    (
        "http_download",
        {
            "storage": "supabase",
            "bucket": "audio-in",
            "max_bytes": 1000,
            "allowed_content_types": ["audio/*", "Video/MP4", "*/*"],
            "path_template": "jobs/{job_id}/{step_id}/{attempt}-{filename}",
        },
    ),
    ("http_request", {"url_template": "https://api.example/v1/items/{id}?q={q}"}),
    (
        "http_request",
        {
            "method": "POST",
            "url_template": "https://api.example/v1/items",
            "headers": {"Accept": "application/json"},
            "secret_headers": {"Authorization": {"env_var": "EXAMPLE_TOKEN", "prefix": "Bearer "}},
            "expected_statuses": [200, 201, 404],
        },
    ),
    ("webhook_call", {}),
    (
        "webhook_call",
        {
            "url_template": "https://hooks.example/{hook}",
            "secret_env_var": "WEBHOOK_SECRET",
            "headers": {"X-Source": "supaflow"},
        },
    ),
    ("json_transform", {"template": {"n.$": "$.input.count", "fixed": "$not-a-path"}}),
    ("edge_function", {"function_name": "transcode-audio"}),
    ("delay", {"seconds": 0.5}),
]


@pytest.mark.parametrize(("type_", "config"), VALID)
def test_valid_configs_parse(type_: str, config: dict[str, Any]) -> None:
    """Each valid config parses into the model registered for its type."""
    parsed = CATALOG.parse_config(type_, config)
    assert isinstance(parsed, CATALOG.types[type_].config_model)


def test_defaults() -> None:
    """Defaults named in the design hold."""
    gemini = CATALOG.parse_config("gemini_prompt", {"prompt_template": "x"})
    assert isinstance(gemini, GeminiPromptConfig)
    assert (gemini.model, gemini.api_version, gemini.api_key_env_var) == (
        "gemini-2.5-flash",
        "v1beta",
        "GEMINI_API_KEY",
    )
    assert gemini.inline_max_bytes == 20 * 1024 * 1024
    assert gemini.response_format == "transcript"
    download = CATALOG.parse_config("http_download", {})
    assert isinstance(download, HttpDownloadConfig)
    assert download.storage is None  # falls back to STORAGE_BACKEND
    edge = CATALOG.parse_config("edge_function", {"function_name": "f"})
    assert edge.api_key_env_var == "SUPABASE_SERVICE_ROLE_KEY"  # type: ignore[attr-defined]


INVALID: list[tuple[str, dict[str, Any], set[str]]] = [
    ("gemini_prompt", {}, {"config.prompt_template"}),
    ("gemini_prompt", {"prompt_template": "x", "api_key": "AIza-secret"}, {"config.api_key"}),
    (
        "gemini_prompt",
        {"prompt_template": "x", "api_key_env_var": "AIzaSyD-not-a-name"},
        {"config.api_key_env_var"},
    ),
    ("gemini_prompt", {"prompt_template": "x {a.b} {0}"}, {"config.prompt_template"}),
    (
        "gemini_prompt",
        {"prompt_template": "x", "response_format": "xml", "temperature": 3, "base_url": "ftp://x"},
        {"config.response_format", "config.temperature", "config.base_url"},
    ),
    ("gemini_prompt", {"prompt_template": "x", "response_json_schema": {}}, {"config"}),
    (
        "http_download",
        {"max_bytes": 0, "allowed_content_types": ["audio", "audio/*"]},
        {"config.max_bytes", "config.allowed_content_types"},
    ),
    ("http_download", {"path_template": "../{job_id}"}, {"config.path_template"}),
    ("http_download", {"path_template": "jobs/{secret}"}, {"config.path_template"}),
    ("http_download", {"storage": "s3", "bucket": "UPPER"}, {"config.storage", "config.bucket"}),
    ("http_request", {"url_template": "file:///etc/passwd"}, {"config.url_template"}),
    ("http_request", {"url_template": "https://user:pw@api.example/"}, {"config.url_template"}),
    (
        "http_request",
        {"url_template": "https://api.example/?api_key=abc123"},
        {"config.url_template"},
    ),
    (
        "http_request",
        {"url_template": "https://api.example/", "headers": {"Authorization": "Bearer abc"}},
        {"config.headers"},
    ),
    (
        "http_request",
        {"url_template": "https://api.example/", "headers": {"X-A": "a\r\nB: c"}},
        {"config.headers"},
    ),
    (
        "http_request",
        {
            "url_template": "https://api.example/",
            "method": "TRACE",
            "expected_statuses": [99],
            "secret_headers": {"X-Key": {"env_var": "lower"}},
        },
        {"config.method", "config.expected_statuses[0]", "config.secret_headers.X-Key.env_var"},
    ),
    ("webhook_call", {"secret_env_var": "whsec_abc123"}, {"config.secret_env_var"}),
    (
        "webhook_call",
        {"secret": "x", "timeout_seconds": 0},
        {"config.secret", "config.timeout_seconds"},
    ),
    ("json_transform", {}, {"config.template"}),
    ("json_transform", {"template": {"a.$": "$.input[", "b.$": 3}}, {"config.template"}),
    ("json_transform", {"template": {"a.$": "$.steps.download"}}, {"config.template"}),
    ("edge_function", {"function_name": "../admin"}, {"config.function_name"}),
    ("delay", {"seconds": -1}, {"config.seconds"}),
    ("delay", {"seconds": 10, "timeout_seconds": 5}, {"config"}),
    (
        "delay",
        {"seconds": 1, "retry": {"max_retries": 100, "strategy": "random"}},
        {"config.retry.max_retries", "config.retry.strategy"},
    ),
]


@pytest.mark.parametrize(("type_", "config", "locations"), INVALID)
def test_invalid_configs_report_every_problem(
    type_: str, config: dict[str, Any], locations: set[str]
) -> None:
    """An invalid config raises DefinitionError whose problems name every bad field."""
    with pytest.raises(DefinitionError) as info:
        CATALOG.parse_config(type_, config)
    assert {p.location for p in info.value.problems} == locations


def test_env_var_problem_never_echoes_value_as_a_secret_hint() -> None:
    """The message for a non-name in an *_env_var field explains it must be a NAME."""
    with pytest.raises(DefinitionError) as info:
        CATALOG.parse_config("webhook_call", {"secret_env_var": "s3cr3t"})
    assert "NAME of an environment variable" in info.value.problems[0].message


def test_unknown_type() -> None:
    """An unknown type is reported at `type`, listing the known ones."""
    with pytest.raises(DefinitionError) as info:
        CATALOG.parse_config("ftp_upload", {})
    assert info.value.problems[0].location == "type"
    assert "gemini_prompt" in info.value.problems[0].message


def _row(**overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": "webhook-notify",
        "type": "webhook_call",
        "description": "Notify",
        "config": {"secret_env_var": "WEBHOOK_SECRET"},
        "target_function": "execute-webhook-call",
    }
    row.update(overrides)
    return row


def test_validate_transformer_returns_definition_and_config() -> None:
    """A valid row (timestamps included) yields its definition and parsed config."""
    definition, config = CATALOG.validate(_row(created_at="2026-01-01T00:00:00Z"))
    assert definition.id == "webhook-notify"
    assert config.secret_env_var == "WEBHOOK_SECRET"  # type: ignore[attr-defined]


ROW_PROBLEMS: list[tuple[dict[str, Any], set[str]]] = [
    (_row(target_function="execute-gemini-prompt"), {"target_function"}),
    (_row(type="nope"), {"type"}),
    (_row(id="Bad Id", config={"secret_env_var": "bad"}), {"id", "config.secret_env_var"}),
    (_row(config="not an object"), {"config"}),
    (_row(extra=1), {"extra"}),
    ({"id": "x"}, {"type", "config", "target_function"}),
]


@pytest.mark.parametrize(("row", "locations"), ROW_PROBLEMS)
def test_check_transformer_lists_every_problem(row: dict[str, Any], locations: set[str]) -> None:
    """check_transformer reports row, type/target and config problems together."""
    definition, problems = CATALOG.check(row)
    assert definition is None
    assert {p.location for p in problems} == locations
    with pytest.raises(DefinitionError):
        CATALOG.validate(row)


def test_target_functions_are_the_specification_names() -> None:
    """Each type maps to the executor name the specification uses."""
    assert {t: e.target_function for t, e in CATALOG.types.items()} == {
        "gemini_prompt": "execute-gemini-prompt",
        "http_download": "execute-http-download",
        "http_request": "execute-http-request",
        "webhook_call": "execute-webhook-call",
        "json_transform": "execute-json-transform",
        "edge_function": "invoke-edge-function",
        "delay": "execute-delay",
    }


@pytest.mark.parametrize(
    ("template", "expected"),
    [("a {x} b {y}", ["x", "y"]), ("{{literal}}", []), ("none", [])],
)
def test_template_fields(template: str, expected: list[str]) -> None:
    """template_fields lists plain placeholders and ignores escaped braces."""
    assert template_fields(template) == expected


def test_delay_model_default_timeout_covers_delay() -> None:
    """A delay's default step timeout is longer than the longest allowed delay."""
    assert DelayConfig(seconds=3600).timeout_seconds > 3600


def test_every_transformer_module_is_in_the_catalog() -> None:
    """A module of tasks/ that defines a transformer type is listed in the registry's catalog,
    so adding a type is one module plus one registry line, and none is forgotten."""
    import importlib
    import pkgutil
    from pathlib import Path

    from tasks import registry

    # The package's folder from a module of it: pytest may put a tests/tasks namespace first.
    folder = str(Path(registry.__file__).parent)
    defined = {
        module.TRANSFORMER.name
        for info in pkgutil.iter_modules([folder])
        if hasattr(module := importlib.import_module(f"tasks.{info.name}"), "TRANSFORMER")
    }
    assert defined == set(CATALOG.types)
