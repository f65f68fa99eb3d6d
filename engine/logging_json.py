"""Structured logging: one JSON object per line, carrying the job context of the record.

Flows and tasks log through Prefect's run logger with `extra={...}`; Prefect's
`PrefectLogAdapter` merges those fields with its own (flow_run_id, task_run_id, names) into the
LogRecord, so they are record attributes here. Three pieces:

- `JsonLogFormatter`: the console/file line: time, level, logger, message, every context field
  present (`CONTEXT_FIELDS`), and the exception if any. Other record attributes are left out on
  purpose: only known, non-secret fields are written.
- `ContextSuffixFormatter`: for Prefect's API handler, whose formatted text is the message shown
  in the Prefect UI: "message (job_id=… step_id=… attempt=2)".
- `RunContextFilter`: fills job_id / workflow_id / step_id / transformer_id / attempt from the
  active Prefect run when a record lacks them (Prefect's own lines such as "Finished in state
  Completed()"), so every line of a run carries its job.

Processes pick this up in two ways: the API calls `install_json_logging`; Prefect processes
(workers and the flow runs they start) read `engine/logging.yml` through
`PREFECT_LOGGING_SETTINGS_PATH` (see `prefect_logging_env`).
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections import OrderedDict
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

#: Record attributes written to JSON lines when present (and not None), in this order.
CONTEXT_FIELDS: tuple[str, ...] = (
    "job_id",
    "workflow_id",
    "step_id",
    "transformer_id",
    "attempt",
    "status",
    "flow_run_id",
    "task_run_id",
    "flow_run_name",
    "task_run_name",
    "dispatched_flow_run_id",
    "duration_ms",
    "error_kind",
    "decision",
    "alert_kind",
    "alert_subject",
    "route",
    "method",
    "status_code",
)

#: Fields the UI suffix leaves out: Prefect already files each line under its run.
_UI_SKIP = frozenset({"flow_run_id", "task_run_id", "flow_run_name", "task_run_name"})

#: Fields RunContextFilter may fill from the active Prefect run.
_RUN_FIELDS = ("job_id", "workflow_id", "step_id", "transformer_id", "attempt")


def _json_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def context_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The record's context fields that are set, as JSON-safe values."""
    fields: dict[str, Any] = {}
    for name in CONTEXT_FIELDS:
        value = getattr(record, name, None)
        if value is not None:
            fields[name] = _json_value(value)
    return fields


class JsonLogFormatter(logging.Formatter):
    """A logging.Formatter writing one compact JSON object per record."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # dictConfig passes format/datefmt/style: the line layout is fixed, so they are ignored.
        super().__init__()

    def format(self, record: logging.LogRecord) -> str:
        """`{"ts", "level", "logger", "message", <context fields>, "exc_info"?}`."""
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(context_fields(record))
        if record.exc_info and record.exc_info[0] is not None:
            exc_type, exc, _tb = record.exc_info
            line["exc_info"] = {
                "type": exc_type.__name__,
                "message": str(exc),
                "traceback": self.formatException(record.exc_info),
            }
        elif record.exc_text:
            line["exc_info"] = {"traceback": record.exc_text}
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str, separators=(",", ":"))


class ContextSuffixFormatter(logging.Formatter):
    """The message followed by its job context, for the Prefect UI's log view."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()

    def format(self, record: logging.LogRecord) -> str:
        """`message (job_id=… step_id=… …)`, plus the traceback when there is one."""
        text = record.getMessage()
        fields = [f"{k}={v}" for k, v in context_fields(record).items() if k not in _UI_SKIP]
        if fields:
            text = f"{text} ({' '.join(fields)})"
        if record.exc_info and record.exc_info[0] is not None:
            text = f"{text}\n{self.formatException(record.exc_info)}"
        return text


def run_context_fields() -> dict[str, Any]:
    """Job context of the active Prefect run, if any (empty outside runs).

    Reads the flow run's `job_id` parameter, and inside a task run the `job` and `step`
    arguments of the engine's step task (objects with job_id/workflow_id and
    step_id/transformer_id) and the attempt number. Prefect is only consulted when the
    process already imported it, so the API never pays for importing it here.
    """
    context = sys.modules.get("prefect.context")
    if context is None:
        return {}
    fields: dict[str, Any] = {}
    try:
        flow_ctx = context.FlowRunContext.get()
        if flow_ctx is not None and flow_ctx.flow_run is not None:
            job_id = (flow_ctx.flow_run.parameters or {}).get("job_id")
            if job_id is not None:
                fields["job_id"] = str(job_id)
        task_ctx = context.TaskRunContext.get()
        if task_ctx is not None:
            params = task_ctx.parameters or {}
            job, step = params.get("job"), params.get("step")
            for obj, names in ((job, ("job_id", "workflow_id")), (step, _RUN_FIELDS[2:4])):
                for name in names:
                    value = getattr(obj, name, None)
                    if value is not None:
                        fields[name] = str(value)
            if job is not None and task_ctx.task_run is not None:
                fields["attempt"] = int(task_ctx.task_run.run_count or 1)
    except Exception:  # a logging filter must never break the log call
        return fields
    return fields


#: Job context last seen per flow run and per task run, for lines logged after the run's context
#: closed (Prefect's "Finished in state ..." lines). Bounded: oldest runs are forgotten first.
_RUN_JOBS: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()
_RUN_JOBS_LIMIT = 2048
_RUN_JOBS_LOCK = threading.Lock()
_REMEMBERED = (("flow_run_id", ("job_id", "workflow_id")), ("task_run_id", _RUN_FIELDS))


def _remember_and_recall(record: logging.LogRecord) -> dict[str, Any]:
    recalled: dict[str, Any] = {}
    for id_field, names in _REMEMBERED:
        run_id = getattr(record, id_field, None)
        if run_id is None:
            continue
        key = (id_field, str(run_id))
        seen = {n: getattr(record, n) for n in names if getattr(record, n, None) is not None}
        with _RUN_JOBS_LOCK:
            known = _RUN_JOBS.get(key, {})
            if seen and any(known.get(n) != v for n, v in seen.items()):
                known = {**known, **seen}
                _RUN_JOBS[key] = known
                _RUN_JOBS.move_to_end(key)
                while len(_RUN_JOBS) > _RUN_JOBS_LIMIT:
                    _RUN_JOBS.popitem(last=False)
        for name, value in known.items():
            recalled.setdefault(name, value)
    return recalled


class RunContextFilter(logging.Filter):
    """Adds the active run's job context to records that lack it; never drops a record.

    Sources, in order: the record's own fields, the active Prefect run (`run_context_fields`),
    and what earlier lines of the same flow or task run carried (for lines logged after its
    context closed).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Fill missing job context attributes."""
        if not all(getattr(record, name, None) is not None for name in _RUN_FIELDS):
            for name, value in run_context_fields().items():
                if getattr(record, name, None) is None:
                    setattr(record, name, value)
        # Always remember (a complete record teaches the context of its run), then recall.
        for name, value in _remember_and_recall(record).items():
            if getattr(record, name, None) is None:
                setattr(record, name, value)
        return True


# -- installation ---------------------------------------------------------------------------


def prefect_logging_config_path() -> Path:
    """The Prefect logging config shipped with the engine (engine/logging.yml)."""
    return Path(str(resources.files("engine").joinpath("logging.yml")))


def prefect_logging_env() -> dict[str, str]:
    """Environment that makes Prefect processes (workers, flow runs) log JSON lines.

    Prefect reads its logging config from PREFECT_LOGGING_SETTINGS_PATH when that file
    exists; flow-run processes a worker starts inherit the worker's environment.
    """
    return {"PREFECT_LOGGING_SETTINGS_PATH": str(prefect_logging_config_path())}


_INSTALLED_MARK = "_supaflow_json_handler"


def install_json_logging(
    level: int | str = logging.INFO,
    *,
    enabled: bool = True,
    stream: Any = None,
    loggers: tuple[str, ...] = ("uvicorn", "uvicorn.error", "uvicorn.access", "supaflow"),
) -> logging.Handler | None:
    """Send the root logger's records to `stream` (stderr) as JSON lines; idempotent.

    For the API process (`settings.log_json` decides `enabled`). Uvicorn's loggers are made to
    propagate to the root handler instead of printing their own text lines. Returns the
    handler, or None when disabled.
    """
    if not enabled:
        return None
    root = logging.getLogger()
    for handler in root.handlers:
        if getattr(handler, _INSTALLED_MARK, False):
            return handler
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonLogFormatter())
    handler.addFilter(RunContextFilter())
    setattr(handler, _INSTALLED_MARK, True)
    root.addHandler(handler)
    root.setLevel(level)
    for name in loggers:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    return handler


def uvicorn_log_config(level: str = "info") -> dict[str, Any]:
    """A `log_config` for `uvicorn.run` that writes JSON lines (uvicorn's own and the app's)."""
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "json",
        "filters": ["run_context"],
        "stream": "ext://sys.stderr",
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "engine.logging_json.JsonLogFormatter"}},
        "filters": {"run_context": {"()": "engine.logging_json.RunContextFilter"}},
        "handlers": {"json": handler},
        "loggers": {
            "uvicorn": {"level": level.upper(), "handlers": [], "propagate": True},
            "uvicorn.error": {"level": level.upper(), "handlers": [], "propagate": True},
            "uvicorn.access": {"level": level.upper(), "handlers": [], "propagate": True},
        },
        "root": {"level": level.upper(), "handlers": ["json"]},
    }
