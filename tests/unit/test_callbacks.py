"""Unit tests of the pure callback rules (engine.jobs.callbacks), the on_finish model and the
ahead-of-time SSRF check of a callback URL."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from cli.definition_files import load_definitions
from engine.definitions.callback_target import CallbackTarget
from engine.definitions.models import WorkflowDefinition
from engine.jobs import callbacks as rules
from engine.jobs.callbacks import Callback, Outcome
from engine.security.destinations import url_destination_problem
from engine.security.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from engine.settings import get_settings

FINISHED = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
COMPLETED = Callback(
    id=1, job_id="j-1", end_number=1, workflow_id="wf", workflow_version=2,
    url="https://hooks.example.com/done", secret_env="CB_SECRET", max_attempts=5,
    retry_delay_seconds=10, job_status="completed", final_result={"words": 2},
    error_message=None, error_kind=None, finished_at=FINISHED, attempt=1,
)  # fmt: skip
FAILED = replace(
    COMPLETED, job_status="failed", final_result=None, error_message="step 'a' failed",
    error_kind="cancelled", end_number=2,
)  # fmt: skip


@pytest.mark.parametrize(
    ("attempts", "first", "expected"),
    [(0, 10, 0), (1, 10, 10), (2, 10, 20), (3, 10, 40), (5, 1, 16), (12, 10, 3600), (99, 60, 3600)],
)
def test_retry_delay_doubles_from_the_first_delay_up_to_an_hour(
    attempts: int, first: float, expected: float
) -> None:
    """After n failed attempts the wait is first * 2^(n-1), never more than an hour."""
    assert rules.retry_delay(attempts, first) == expected


@pytest.mark.parametrize(
    ("attempt", "max_attempts", "succeeded", "expected"),
    [
        (1, 5, True, Outcome("delivered", None)),
        (5, 5, True, Outcome("delivered", None)),
        (1, 5, False, Outcome("pending", 10.0)),
        (2, 5, False, Outcome("pending", 20.0)),
        (4, 5, False, Outcome("pending", 80.0)),
        (5, 5, False, Outcome("failed", None)),
        (1, 1, False, Outcome("failed", None)),
    ],
)
def test_after_attempt(attempt: int, max_attempts: int, succeeded: bool, expected: Outcome) -> None:
    """Success delivers; a failure waits the backoff, or ends failed at the last attempt."""
    outcome = rules.after_attempt(
        attempt=attempt, max_attempts=max_attempts, first_delay=10, succeeded=succeeded
    )
    assert outcome == expected


DEFINED = CallbackTarget(url="https://a.example.com/cb", secret_env="CB_SECRET", max_attempts=3)


@pytest.mark.parametrize(
    ("defined", "requested", "expected"),
    [
        (None, None, None),
        (
            DEFINED,
            None,
            {"url": "https://a.example.com/cb", "secret_env": "CB_SECRET", "max_attempts": 3,
             "retry_delay_seconds": 10.0},
        ),
        (
            DEFINED,
            "https://b.example.com/mine",
            {"url": "https://b.example.com/mine", "secret_env": "CB_SECRET", "max_attempts": 3,
             "retry_delay_seconds": 10.0},
        ),
        (
            None,
            "https://b.example.com/mine",
            {"url": "https://b.example.com/mine", "secret_env": None, "max_attempts": 5,
             "retry_delay_seconds": 10.0},
        ),
    ],
)  # fmt: skip
def test_resolve_target(
    defined: CallbackTarget | None, requested: str | None, expected: dict[str, Any] | None
) -> None:
    """The start's URL replaces the definition's; the rest of the definition's target stays;
    the stored target names the secret's variable, never a secret."""
    assert rules.resolve_target(defined, requested) == expected


@pytest.mark.parametrize(
    ("callback", "expected"),
    [
        (
            COMPLETED,
            {"job_id": "j-1", "workflow_id": "wf", "workflow_version": 2, "status": "completed",
             "finished_at": "2026-12-07T12:00:00+00:00", "final_result": {"words": 2}},
        ),
        (
            FAILED,
            {"job_id": "j-1", "workflow_id": "wf", "workflow_version": 2, "status": "failed",
             "finished_at": "2026-12-07T12:00:00+00:00", "error": "step 'a' failed",
             "error_kind": "cancelled"},
        ),
    ],
)  # fmt: skip
def test_payload(callback: Callback, expected: dict[str, Any]) -> None:
    """A completed job reports its final_result; a failed one its error and error kind."""
    assert rules.payload(callback) == expected
    assert json.loads(rules.encode(rules.payload(callback))) == expected


@pytest.mark.parametrize(
    ("callback", "secret", "signed", "event", "delivery"),
    [
        (COMPLETED, b"s3cret", True, "job.completed", "callback-j-1-1"),
        (FAILED, b"s3cret", True, "job.failed", "callback-j-1-2"),
        (COMPLETED, None, False, "job.completed", "callback-j-1-1"),
    ],
)
def test_headers_sign_like_webhook_steps(
    callback: Callback, secret: bytes | None, signed: bool, event: str, delivery: str
) -> None:
    """With a secret the headers carry a v1 signature a receiver verifies with
    engine.security.signing.verify over the exact body; the delivery id is per callback."""
    body = rules.encode(rules.payload(callback))
    headers = rules.headers(callback, body, secret=secret, now=1_765_000_000)
    assert headers["Content-Type"] == "application/json"
    assert headers[rules.EVENT_HEADER] == event
    assert headers[rules.DELIVERY_HEADER] == delivery
    assert (SIGNATURE_HEADER in headers) is signed
    if signed:
        assert headers[TIMESTAMP_HEADER] == "1765000000"
        assert verify(b"s3cret", headers, body, now=1_765_000_000)
        assert not verify(b"other", headers, body, now=1_765_000_000)
        assert not verify(b"s3cret", headers, body + b" ", now=1_765_000_000)


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://hooks.example.com/cb?x=1", True),
        ("http://127.0.0.1:8080/cb", True),
        ("ftp://hooks.example.com/cb", False),
        ("/relative/path", False),
        ("https://user:pw@hooks.example.com/cb", False),
        ("https://hooks.example.com/a b", False),
        ("https://hooks.example.com:99999/cb", False),
        ("https://", False),
        ("https://x.example.com/" + "a" * 2100, False),
    ],
)
def test_on_finish_url_syntax(url: str, ok: bool) -> None:
    """on_finish.url must be an absolute http(s) URL with a host and no credentials."""
    definition = {"steps": [{"id": "a", "transformer": "t"}], "on_finish": {"url": url}}
    if ok:
        assert WorkflowDefinition.model_validate(definition).on_finish is not None
    else:
        with pytest.raises(ValidationError) as info:
            WorkflowDefinition.model_validate(definition)
        assert info.value.errors()[0]["loc"][:2] == ("on_finish", "url")


@pytest.mark.parametrize(
    "target",
    [
        {"url": "https://a.example.com", "secret_env": "not-a-name"},
        {"url": "https://a.example.com", "secret_env": "sk_live_123"},
        {"url": "https://a.example.com", "max_attempts": 0},
        {"url": "https://a.example.com", "max_attempts": 21},
        {"url": "https://a.example.com", "retry_delay_seconds": 0.1},
        {"url": "https://a.example.com", "secret": "inline"},
    ],
)
def test_on_finish_refuses_bad_fields(target: dict[str, Any]) -> None:
    """The secret is named by an environment variable, never given; bounds hold; no extras."""
    with pytest.raises(ValidationError):
        CallbackTarget.model_validate(target)


@pytest.mark.parametrize(
    ("url", "allowlist", "problem"),
    [
        ("http://127.0.0.1:9/cb", "", "address not allowed: 127.0.0.1"),
        ("http://127.0.0.1:9/cb", "127.0.0.1", None),
        ("http://10.1.2.3/cb", "", "address not allowed: 10.1.2.3"),
        ("http://10.1.2.3/cb", "10.0.0.0/8", None),
        ("http://169.254.169.254/latest", "", "address not allowed: 169.254.169.254"),
        ("http://[::1]/cb", "", "address not allowed: ::1"),
        ("http://[::ffff:10.0.0.1]/cb", "", "address not allowed: ::ffff:10.0.0.1"),
        ("http://localhost/cb", "", "address not allowed: localhost"),
        ("http://localhost/cb", "localhost", None),
        ("https://93.184.215.14/cb", "", None),
        ("http://no-such-host.invalid/cb", "", "host not found: no-such-host.invalid"),
        ("ftp://93.184.215.14/cb", "", "must be an absolute http:// or https:// URL"),
        ("http://[bad/cb", "", "malformed URL"),
    ],
)
def test_url_destination_problem(url: str, allowlist: str, problem: str | None) -> None:
    """The SSRF policy applied up front: private, loopback, link-local and mapped addresses
    are refused unless HTTP_ALLOWLIST permits them; the message names the host as given."""
    assert url_destination_problem(url, allowlist) == problem


@pytest.mark.parametrize(
    ("url", "allowlist", "problem"),
    [
        ("http://10.0.0.5/cb", "", "address not allowed: 10.0.0.5"),
        ("http://10.0.0.5/cb", "10.0.0.0/8", None),
        ("https://93.184.215.14/cb", "", None),
        ("ftp://93.184.215.14/cb", "", "must be an absolute http:// or https:// URL"),
    ],
)
def test_a_saved_definitions_target_goes_through_the_ssrf_policy(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    url: str,
    allowlist: str,
    problem: str | None,
) -> None:
    """Loading definitions for a sync reports an on_finish URL the policy refuses (once, at
    definition.on_finish.url), following HTTP_ALLOWLIST."""
    monkeypatch.setenv("HTTP_ALLOWLIST", allowlist)
    get_settings.cache_clear()
    folder = tmp_path / "definitions"
    (folder / "transformers").mkdir(parents=True)
    (folder / "workflows").mkdir()
    transformer = {"id": "pause", "type": "delay", "config": {"seconds": 0.01},
                   "target_function": "execute-delay"}  # fmt: skip
    (folder / "transformers" / "pause.json").write_text(json.dumps(transformer))
    definition = {"steps": [{"id": "a", "transformer": "pause"}], "on_finish": {"url": url}}
    workflow = {"id": "wf", "definition": definition}
    (folder / "workflows" / "wf.json").write_text(json.dumps(workflow))
    try:
        found = [(p.location, p.message) for p in load_definitions(folder).problems]
    finally:
        get_settings.cache_clear()
    callback = [(loc, msg) for loc, msg in found if "on_finish" in loc]
    if problem is None:
        assert found == []
    else:
        assert len(callback) == 1 and problem in callback[0][1], found
        assert callback[0][0] == "definitions/workflows/wf.json: definition.on_finish.url"
