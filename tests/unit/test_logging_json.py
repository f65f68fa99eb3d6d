"""Structured JSON log lines (engine.logging_json) and the Prefect logging config shipped with
the engine (engine/logging.yml)."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import sys
import uuid
from typing import Any

import pytest
from prefect.logging.configuration import load_logging_config
from prefect.logging.loggers import PrefectLogAdapter

from engine.logging_json import (
    CONTEXT_FIELDS,
    ContextSuffixFormatter,
    JsonLogFormatter,
    RunContextFilter,
    install_json_logging,
    prefect_logging_config_path,
    prefect_logging_env,
    run_context_fields,
    uvicorn_log_config,
)


def record(msg: str = "step started", *args: Any, **extra: Any) -> logging.LogRecord:
    """A LogRecord as `logger.info(msg, *args, extra=extra)` makes it."""
    rec = logging.LogRecord("supaflow.test", logging.INFO, __file__, 1, msg, args, None)
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


CONTEXT = {"job_id": "j1", "workflow_id": "wf", "step_id": "s", "transformer_id": "t", "attempt": 2}
OUTCOME = {"duration_ms": 12.5, "error_kind": "timeout"}


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({}, {}),
        (CONTEXT, CONTEXT),
        (OUTCOME, OUTCOME),
        ({"decision": "dispatch", "flow_run_id": None}, {"decision": "dispatch"}),  # None: left out
        ({"flow_run_id": uuid.UUID(int=1)}, {"flow_run_id": str(uuid.UUID(int=1))}),
        ({"api_key": "s3cret", "password": "x"}, {}),  # unknown extras are never written
    ],
)
def test_json_line_carries_context_fields(extra: dict[str, Any], expected: dict[str, Any]) -> None:
    """Each line is one JSON object: fixed keys plus exactly the context fields that are set."""
    line = JsonLogFormatter().format(record("step %s", "started", **extra))
    assert "\n" not in line
    data = json.loads(line)
    assert {k: data[k] for k in ("level", "logger", "message")} == {
        "level": "INFO",
        "logger": "supaflow.test",
        "message": "step started",
    }
    assert data["ts"].endswith("+00:00")
    assert {k: v for k, v in data.items() if k not in ("ts", "level", "logger", "message")} == (
        expected
    )


def test_json_line_has_exception_and_field_order() -> None:
    """Exceptions are structured; context fields follow CONTEXT_FIELDS' order."""
    try:
        raise ValueError("boom")
    except ValueError:
        rec = record("failed", step_id="s", job_id="j")
        rec.exc_info = sys.exc_info()
    data = json.loads(JsonLogFormatter().format(rec))
    assert data["exc_info"]["type"] == "ValueError"
    assert data["exc_info"]["message"] == "boom"
    assert "raise ValueError" in data["exc_info"]["traceback"]
    keys = [k for k in data if k in CONTEXT_FIELDS]
    assert keys == ["job_id", "step_id"]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({}, "step started"),
        ({"job_id": "j", "attempt": 1}, "step started (job_id=j attempt=1)"),
        ({"job_id": "j", "flow_run_id": "f", "task_run_id": "t"}, "step started (job_id=j)"),
    ],
)
def test_ui_suffix(extra: dict[str, Any], expected: str) -> None:
    """The Prefect UI message gets the job context; run ids are left to Prefect's own links."""
    assert ContextSuffixFormatter().format(record(**extra)) == expected


def test_prefect_run_logger_adapter_merges_call_extra() -> None:
    """Prefect's PrefectLogAdapter keeps the run's fields and adds the call's `extra`, so both
    reach the JSON line."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLogFormatter())
    base = logging.getLogger("supaflow.test.adapter")
    base.addHandler(handler)
    base.setLevel(logging.INFO)
    base.propagate = False
    try:
        adapter = PrefectLogAdapter(base, extra={"flow_run_id": "fr-1", "task_run_id": "tr-1"})
        adapter.info("step succeeded", extra={"job_id": "j1", "step_id": "s", "duration_ms": 3.0})
    finally:
        base.removeHandler(handler)
    data = json.loads(stream.getvalue())
    assert data["flow_run_id"] == "fr-1" and data["task_run_id"] == "tr-1"
    assert data["job_id"] == "j1" and data["step_id"] == "s" and data["duration_ms"] == 3.0


def test_run_context_filter_outside_runs_changes_nothing() -> None:
    """Outside a Prefect run the filter adds nothing and never drops the record."""
    rec = record(job_id="mine")
    assert run_context_fields() == {}
    assert RunContextFilter().filter(rec) is True
    assert rec.job_id == "mine"  # type: ignore[attr-defined]
    assert getattr(rec, "step_id", None) is None


def test_install_json_logging_is_idempotent_and_removable() -> None:
    """The API's installer adds one JSON handler to the root logger, once."""
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = install_json_logging(logging.INFO, stream=stream, loggers=())
    try:
        assert install_json_logging(logging.INFO, stream=stream, loggers=()) is handler
        logging.getLogger("supaflow.api").info("hello", extra={"route": "/jobs/{job_id}"})
        lines = [json.loads(x) for x in stream.getvalue().splitlines()]
        assert {"message": "hello", "route": "/jobs/{job_id}"}.items() <= lines[-1].items()
    finally:
        assert handler is not None
        root.removeHandler(handler)
        root.setLevel(level)
    assert install_json_logging(enabled=False) is None


def test_prefect_loads_the_shipped_logging_config() -> None:
    """Prefect's own loader accepts engine/logging.yml: run loggers keep the API handler, the
    console handler writes JSON, both fill the run context."""
    path = prefect_logging_config_path()
    assert prefect_logging_env() == {"PREFECT_LOGGING_SETTINGS_PATH": str(path)}
    config = load_logging_config(path)
    handlers = config["handlers"]
    assert handlers["console"]["formatter"] == "json"
    assert handlers["api"]["class"] == "prefect.logging.handlers.APILogHandler"
    assert handlers["api"]["formatter"] == "ui"
    assert handlers["console"]["filters"] == handlers["api"]["filters"] == ["run_context"]
    assert config["formatters"]["json"]["()"] == "engine.logging_json.JsonLogFormatter"
    assert config["loggers"]["prefect.task_runs"]["handlers"] == ["api"]
    assert config["loggers"]["prefect.flow_runs"]["handlers"] == ["api"]
    assert config["root"]["handlers"] == ["console"]
    # Prefect substituted its settings into the template.
    assert config["loggers"]["prefect"]["level"] in ("DEBUG", "INFO", "WARNING", "ERROR")


def test_uvicorn_log_config_is_valid() -> None:
    """The uvicorn log_config builds (checked by logging's own configurator on a copy)."""
    config = uvicorn_log_config("info")
    configurator = logging.config.DictConfigurator(config)
    formatter = configurator.configure_formatter(config["formatters"]["json"])
    assert isinstance(formatter, JsonLogFormatter)
    assert config["root"]["handlers"] == ["json"]


@pytest.mark.parametrize(
    ("first", "later", "expected"),
    [
        # A flow run's closing line (after its context closed) gets the job of earlier lines.
        (
            {"flow_run_id": "fr-a", "job_id": "j-a", "workflow_id": "wf"},
            {"flow_run_id": "fr-a"},
            {"job_id": "j-a", "workflow_id": "wf"},
        ),
        # A task run's closing line also gets its step, transformer and last attempt.
        (
            {"flow_run_id": "fr-b", "task_run_id": "tr-b", "job_id": "j-b", "workflow_id": "wf",
             "step_id": "s", "transformer_id": "t", "attempt": 3},
            {"flow_run_id": "fr-b", "task_run_id": "tr-b"},
            {"job_id": "j-b", "workflow_id": "wf", "step_id": "s", "transformer_id": "t",
             "attempt": 3},
        ),
        # Another run learns nothing from it.
        ({"flow_run_id": "fr-c", "job_id": "j-c"}, {"flow_run_id": "fr-other"}, {}),
        # A record's own values win over remembered ones.
        ({"flow_run_id": "fr-d", "job_id": "j-d"}, {"flow_run_id": "fr-d", "job_id": "own"},
         {"job_id": "own"}),
    ],
)  # fmt: skip
def test_run_context_filter_recalls_earlier_lines_of_the_run(
    first: dict[str, Any], later: dict[str, Any], expected: dict[str, Any]
) -> None:
    """Lines logged after a run's context closed still carry the job context of that run."""
    context_filter = RunContextFilter()
    context_filter.filter(record(**first))
    rec = record("Finished in state Completed()", **later)
    context_filter.filter(rec)
    names = ("job_id", "workflow_id", "step_id", "transformer_id", "attempt")
    got = {n: getattr(rec, n) for n in names if getattr(rec, n, None) is not None}
    assert got == expected
