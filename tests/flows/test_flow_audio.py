"""The shipped audio_transcription_v1 workflow end to end: a local file server, a fake Gemini
and a webhook receiver that checks signatures, through a real Prefect server and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import threading
from typing import Any

import psycopg
import pytest
from fakes.gemini_server import FakeGemini
from psycopg.types.json import Jsonb
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from cli.definition_files import sync_definitions
from engine.db.store import JobStore
from engine.security import signing
from engine.settings import get_settings
from flows.run_workflow import run_workflow
from tasks.storage import read_bytes

WEBHOOK_SECRET = "whsec-flow-test"
# An ID3 tag header followed by filler: a few KB served as an mp3.
AUDIO = b"ID3\x03\x00\x00\x00\x00\x00\x00" + bytes(range(256)) * 16
SEGMENTS = [
    {"start_seconds": 0.0, "end_seconds": 1.5, "speaker": "Speaker 1", "text": "Hello there."},
    {"start_seconds": 1.5, "end_seconds": 3.0, "speaker": "Speaker 2", "text": "Hi, welcome."},
]


class WebhookReceiver:
    """A webhook endpoint that verifies each delivery's signature as a receiver would."""

    def __init__(self, secret: bytes) -> None:
        self.secret = secret
        self.deliveries: list[tuple[bool, Any, dict[str, str]]] = []
        self._lock = threading.Lock()

    def __call__(self, request: Request) -> Response:
        body = request.get_data()
        headers = {k: v for k, v in request.headers.items()}
        valid = signing.verify(self.secret, headers, body)
        with self._lock:
            self.deliveries.append((valid, json.loads(body), headers))
        if not valid:
            return Response('{"error": "bad signature"}', status=401)
        return Response('{"received": true}', status=200, content_type="application/json")


@pytest.mark.parametrize(
    ("extra_input", "hint"),
    [
        pytest.param({}, "auto-detect", id="no-hint"),
        pytest.param({"language_hint": "fr"}, "fr", id="hint"),
    ],
)
def test_audio_transcription_job_completes_end_to_end(
    extra_input: dict[str, str],
    hint: str,
    flow_store: JobStore,
    db: psycopg.Connection[Any],
    user_id: str,
    http_server: HTTPServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """download -> transcribe -> notify: the audio is stored with its size and hash, the
    transcript segments come back from (fake) Gemini into final_result, the webhook receives
    them with a valid signature, and every step is recorded as an event. The prompt carries
    the input's language_hint, or its default "auto-detect" when the input has none."""
    sync_definitions(flow_store)
    fake = FakeGemini(http_server)
    fake.queue_transcript(SEGMENTS, language="en")
    # The shipped transformer talks to the real API; this test points it at the fake.
    db.execute(
        "update public.transformers set config = config || %s where id = %s",
        [Jsonb({"base_url": fake.base_url}), "gemini-timestamp-transcriber"],
    )
    monkeypatch.setenv("GEMINI_API_KEY", fake.api_key)
    monkeypatch.setenv("WEBHOOK_SIGNING_SECRET", WEBHOOK_SECRET)
    http_server.expect_request("/media/talk.mp3", method="GET").respond_with_data(
        AUDIO, content_type="audio/mpeg"
    )
    receiver = WebhookReceiver(WEBHOOK_SECRET.encode())
    http_server.expect_request("/hooks/transcripts", method="POST").respond_with_handler(receiver)

    job = flow_store.create_job(
        user_id=user_id,
        workflow_id="audio_transcription_v1",
        input_data={
            "audio_url": http_server.url_for("/media/talk.mp3"),
            "callback_url": http_server.url_for("/hooks/transcripts"),
            **extra_input,
        },
    )
    result = run_workflow(job.id)

    row = flow_store.get_job(job.id)
    assert row["status"] == "completed", row["error_message"]
    assert set(row["step_data"]) == {"download", "transcribe", "notify"}
    download = row["step_data"]["download"]
    assert download["size"] == len(AUDIO)
    assert download["sha256"] == hashlib.sha256(AUDIO).hexdigest()
    assert download["content_type"] == "audio/mpeg"
    assert read_bytes(get_settings(), download["storage_path"]) == AUDIO
    assert result == row["final_result"]
    assert row["final_result"]["transcript"] == {"segments": SEGMENTS, "language": "en"}
    assert row["final_result"]["audio"] == download

    # Gemini got the downloaded bytes (inline) with the API key.
    assert len(fake.generate_calls) == 1
    assert fake.generate_calls[0].headers["x-goog-api-key"] == fake.api_key
    prompt = fake.generate_calls[0].json["contents"][0]["parts"][-1]["text"]
    assert prompt.endswith(f"Language hint: {hint}."), prompt

    assert len(receiver.deliveries) == 1
    valid, payload, _headers = receiver.deliveries[0]
    assert valid
    assert payload == {
        "job_id": job.id,
        "status": "transcribed",
        "segments": SEGMENTS,
        "language": "en",
    }
    assert row["step_data"]["notify"]["status"] == 200

    events = flow_store.events(job.id)
    succeeded = [e["step_id"] for e in events if e["kind"] == "step_succeeded"]
    assert succeeded == ["download", "transcribe", "notify"]
    assert events[0]["kind"] == "created"
    statuses = [e["status"] for e in row["state_history"]]
    assert statuses[0] == "pending" and statuses[-1] == "completed"
    assert "failed" not in statuses and "awaiting_retry" not in statuses
