"""execute-gemini-prompt against the fake Gemini API (tests/fakes/gemini_server.py)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest
from fakes.gemini_server import FakeGemini, Reply
from pytest_httpserver import HTTPServer

from engine.errors import ErrorKind, StepError
from tasks.context import StepContext
from tasks.gemini import GeminiPromptConfig, execute_gemini_prompt
from tasks.storage import put

SEGMENTS = [
    {"start_seconds": 0.0, "end_seconds": 2.5, "speaker": "A", "text": "Hello."},
    {"start_seconds": 2.5, "end_seconds": 4.0, "speaker": "B", "text": "Hi!"},
]
AUDIO = b"ID3" + b"\x01" * 2000


@pytest.fixture
def fake(httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> FakeGemini:
    """The fake API, with GEMINI_API_KEY set to the key it expects."""
    gemini = FakeGemini(httpserver)
    monkeypatch.setenv("GEMINI_API_KEY", gemini.api_key)
    return gemini


def _config(fake: FakeGemini, **values: Any) -> GeminiPromptConfig:
    values.setdefault("prompt_template", "Transcribe the audio. Language hint: {language}.")
    values.setdefault("base_url", fake.base_url)
    values.setdefault("file_poll_interval_seconds", 0.01)
    return GeminiPromptConfig.model_validate(values)


def _audio_input(ctx: StepContext, size: int = len(AUDIO)) -> dict[str, Any]:
    data = (AUDIO * (size // len(AUDIO) + 1))[:size]
    path = put(
        ctx.settings,
        backend="local",
        path="jobs/j/download/a.mp3",
        data=data,
        content_type="audio/mpeg",
    )
    return {"storage_path": path, "content_type": "audio/mpeg", "size": size}


def test_inline_audio_transcript(fake: FakeGemini, ctx: StepContext) -> None:
    """Small audio goes inline; the reply is parsed into segments and language; the prompt
    variables are sanitised and the API key travels in x-goog-api-key."""
    fake.queue_transcript(SEGMENTS, language="en")
    out = execute_gemini_prompt(
        _config(fake),
        {"audio": _audio_input(ctx), "variables": {"language": "en {x}\x07"}},
        ctx,
    )
    assert out == {"segments": SEGMENTS, "language": "en"}
    call = fake.generate_calls[0]
    assert call.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert call.headers["x-goog-api-key"] == fake.api_key
    parts = call.json["contents"][0]["parts"]
    inline = parts[0].get("inlineData") or parts[0].get("inline_data")
    assert base64.b64decode(inline["data"]) == AUDIO
    assert parts[1]["text"] == "Transcribe the audio. Language hint: en (x)."
    assert call.json["generationConfig"]["responseMimeType"] == "application/json"
    assert fake.uploads == []


def test_large_audio_uses_files_api(fake: FakeGemini, ctx: StepContext) -> None:
    """Audio above inline_max_bytes is uploaded (resumable), polled until ACTIVE, referenced
    by URI, and deleted afterwards."""
    fake.queue_transcript(SEGMENTS)
    out = execute_gemini_prompt(
        _config(fake, inline_max_bytes=1000),
        {"audio": _audio_input(ctx, 5000), "variables": {"language": "de"}},
        ctx,
    )
    assert out["segments"] == SEGMENTS
    [uploaded] = fake.uploads
    assert len(uploaded.data) == 5000 and uploaded.mime_type == "audio/mpeg"
    assert uploaded.polls == fake.polls_before_active + 1
    assert uploaded.deleted
    parts = fake.generate_calls[0].json["contents"][0]["parts"]
    file_data = parts[0].get("fileData") or parts[0].get("file_data")
    assert file_data["file_uri"].endswith(f"/files/{uploaded.id}")


def test_failed_file_processing_is_reported_and_file_deleted(
    fake: FakeGemini, ctx: StepContext
) -> None:
    """A file that ends FAILED gives UNSUPPORTED_CONTENT, and is still deleted."""
    fake.file_final_state = "FAILED"
    with pytest.raises(StepError) as info:
        execute_gemini_prompt(
            _config(fake, inline_max_bytes=10),
            {"audio": _audio_input(ctx, 100), "variables": {"language": "en"}},
            ctx,
        )
    assert info.value.kind is ErrorKind.UNSUPPORTED_CONTENT
    assert fake.generate_calls == []
    assert [f.deleted for f in fake.files.values()] == [True]


def test_audio_from_url(fake: FakeGemini, httpserver: HTTPServer, ctx: StepContext) -> None:
    """input.audio may be a URL, fetched through the guarded client."""
    httpserver.expect_request("/talk.wav").respond_with_data(b"RIFF....", content_type="audio/wav")
    fake.queue_transcript(SEGMENTS)
    execute_gemini_prompt(
        _config(fake),
        {"audio": httpserver.url_for("/talk.wav"), "variables": {"language": "en"}},
        ctx,
    )
    inline = fake.generate_calls[0].json["contents"][0]["parts"][0]
    assert (inline.get("inlineData") or inline.get("inline_data"))["mime_type"] == "audio/wav"


@pytest.mark.parametrize(
    ("reply", "kind", "fragment"),
    [
        (Reply.finish("SAFETY"), ErrorKind.CONTENT_BLOCKED, "SAFETY"),
        (Reply.finish("RECITATION"), ErrorKind.CONTENT_BLOCKED, "RECITATION"),
        (
            Reply.blocked_prompt("PROHIBITED_CONTENT"),
            ErrorKind.CONTENT_BLOCKED,
            "PROHIBITED_CONTENT",
        ),
        (
            Reply.finish("MAX_TOKENS", '{"segments": [{"start'),
            ErrorKind.TRUNCATED,
            "max_output_tokens=100",
        ),
        (Reply.error(429, "Resource has been exhausted"), ErrorKind.RATE_LIMITED, "429"),
        (Reply.error(503, "The model is overloaded"), ErrorKind.SERVER_ERROR, "503"),
        (Reply.error(400, "Invalid value at contents"), ErrorKind.CLIENT_ERROR, "400"),
        (Reply.text("not json at all"), ErrorKind.INVALID_RESPONSE, "transcript schema"),
        (
            Reply.json_value({"segments": [{"text": "no times"}]}),
            ErrorKind.INVALID_RESPONSE,
            "transcript schema",
        ),
    ],
)
def test_failures_are_classified(
    fake: FakeGemini, ctx: StepContext, reply: Reply, kind: ErrorKind, fragment: str
) -> None:
    """Blocked, truncated, rate-limited, failing and malformed replies raise clear errors."""
    fake.queue_reply(reply)
    with pytest.raises(StepError) as info:
        execute_gemini_prompt(
            _config(fake, max_output_tokens=100), {"variables": {"language": "en"}}, ctx
        )
    assert info.value.kind is kind
    assert fragment in info.value.message


def test_text_and_json_formats(fake: FakeGemini, ctx: StepContext) -> None:
    """response_format text returns {"text"}; json returns the parsed value."""
    fake.queue_text("plain answer")
    fake.queue_reply(Reply.json_value({"score": 3}))
    prompt = {"prompt_template": "Summarise."}
    out = execute_gemini_prompt(_config(fake, response_format="text", **prompt), {}, ctx)
    assert out == {"text": "plain answer"}
    out = execute_gemini_prompt(
        _config(fake, response_format="json", response_json_schema={"type": "object"}, **prompt),
        {},
        ctx,
    )
    assert out == {"score": 3}


def test_missing_key_and_variable(
    fake: FakeGemini, ctx: StepContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A missing key variable is CONFIG naming it; a missing prompt variable is MAPPING;
    neither calls the API."""
    with pytest.raises(StepError) as info:
        execute_gemini_prompt(_config(fake), {"variables": {}}, ctx)
    assert info.value.kind is ErrorKind.MAPPING and "{language}" in info.value.message
    monkeypatch.delenv("GEMINI_API_KEY")
    with pytest.raises(StepError) as info:
        execute_gemini_prompt(_config(fake), {"variables": {"language": "en"}}, ctx)
    assert info.value.kind is ErrorKind.CONFIG and "GEMINI_API_KEY" in info.value.message
    assert fake.calls == []


def test_wrong_key_rejected_by_api(
    fake: FakeGemini, ctx: StepContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API's 400 for a bad key is a CLIENT_ERROR whose message does not hold the key."""
    monkeypatch.setenv("GEMINI_API_KEY", "wrong-key-value")
    with pytest.raises(StepError) as info:
        execute_gemini_prompt(_config(fake), {"variables": {"language": "en"}}, ctx)
    assert info.value.kind is ErrorKind.CLIENT_ERROR
    assert "wrong-key-value" not in str(info.value)


def test_timeout(
    fake: FakeGemini, ctx: StepContext, await_server_log: Callable[[int], None]
) -> None:
    """A reply slower than request_timeout_seconds is TIMEOUT."""
    slow = Reply.transcript(SEGMENTS)
    slow.delay_seconds = 0.5
    fake.queue_reply(slow)
    with pytest.raises(StepError) as info:
        execute_gemini_prompt(
            _config(fake, request_timeout_seconds=0.1), {"variables": {"language": "en"}}, ctx
        )
    assert info.value.kind is ErrorKind.TIMEOUT
    await_server_log(1)


def test_base_url_is_ssrf_checked(fake: FakeGemini, tmp_path: Any, make_ctx: Any) -> None:
    """Without 127.0.0.1 on the allow-list the SDK cannot reach the (loopback) base_url."""
    from engine.settings import Settings

    closed = Settings(_env_file=None, data_dir=tmp_path, http_allowlist="")
    with pytest.raises(StepError) as info:
        execute_gemini_prompt(
            _config(fake), {"variables": {"language": "en"}}, make_ctx(settings=closed)
        )
    assert info.value.kind is ErrorKind.FORBIDDEN_ADDRESS
    assert fake.calls == []
