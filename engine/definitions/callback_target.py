"""The `on_finish` callback target of a workflow definition (and of a start request).

A job whose definition (or start request) names a target is called back once it completes
or fails: a signed JSON POST, retried with backoff (flows/callbacks.py). The signing secret
is read from the environment variable `secret_env` names at delivery; it is never stored.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

#: Longest callback URL accepted.
MAX_URL_LENGTH = 2048


def check_callback_url(value: str) -> str:
    """`value` if it is an absolute http(s) URL with a host and no credentials or whitespace.

    Raises ValueError saying what is wrong (the address itself is checked against the SSRF
    policy separately: engine.security.destinations).
    """
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValueError("must not contain whitespace or control characters")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError as exc:
        raise ValueError(f"malformed URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http:// or https:// URL")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry credentials (user:password@)")
    return value


CallbackUrl = Annotated[
    str, Field(min_length=1, max_length=MAX_URL_LENGTH), AfterValidator(check_callback_url)
]


#: Same rule as transformers' `secret_env_var` (engine.definitions.transformers).
ENV_NAME_PATTERN = r"^[A-Z_][A-Z0-9_]*$"

EnvName = Annotated[
    str,
    Field(
        max_length=128,
        pattern=ENV_NAME_PATTERN,
        description="The NAME of an environment variable, never the secret itself.",
    ),
]


class CallbackTarget(BaseModel):
    """Where a finished job is reported: `on_finish` of a workflow definition."""

    model_config = ConfigDict(extra="forbid")

    url: CallbackUrl = Field(description="Receiver of the signed JSON POST.")
    secret_env: EnvName | None = Field(
        default=None,
        description="Environment variable holding the HMAC signing secret; unset: unsigned.",
    )
    max_attempts: int = Field(default=5, ge=1, le=20, description="Deliveries tried at most.")
    retry_delay_seconds: float = Field(
        default=10,
        ge=1,
        le=3600,
        description="Delay before the second attempt; each later delay doubles (at most 1 h).",
    )
