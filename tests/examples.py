"""Example definitions shared by several test modules."""

from __future__ import annotations

from typing import Any

#: The definition sketch from DESIGN.md (valid).
DESIGN_EXAMPLE: dict[str, Any] = {
    "input_schema": {
        "type": "object",
        "required": ["audio_url"],
        "properties": {"audio_url": {"type": "string", "format": "uri"}},
    },
    "retry": {
        "max_retries": 3,
        "strategy": "exponential",
        "initial_delay_seconds": 2,
        "backoff_factor": 2,
        "max_delay_seconds": 300,
        "jitter": 0.2,
    },
    "steps": [
        {
            "id": "download",
            "transformer": "http-download-audio",
            "input": {"url.$": "$.input.audio_url"},
        },
        {
            "id": "transcribe",
            "transformer": "gemini-timestamp-transcriber",
            "input": {"audio.$": "$.steps.download"},
            "retry": {"max_retries": 5},
        },
        {
            "id": "notify",
            "transformer": "webhook-notify",
            "input": {
                "url.$": "$.input.callback_url",
                "transcript.$": "$.steps.transcribe.segments",
            },
        },
    ],
    "output": {"transcript.$": "$.steps.transcribe"},
}
