"""One error hierarchy for the whole engine.

Step failures carry an `ErrorKind`, which retry policies match with `retry_on`; the API maps
the other errors to HTTP statuses.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorKind(StrEnum):
    """Why a step failed. Retry policies list the kinds they retry."""

    TIMEOUT = "timeout"  # the step or an upstream call took too long
    CONNECTION = "connection"  # the upstream could not be reached
    RATE_LIMITED = "rate_limited"  # HTTP 429 (and 408)
    SERVER_ERROR = "server_error"  # HTTP 5xx
    CLIENT_ERROR = "client_error"  # HTTP 4xx other than 408/429: the request is wrong
    INVALID_RESPONSE = "invalid_response"  # the upstream answered something unusable
    CONTENT_BLOCKED = "content_blocked"  # a model refused (SAFETY and similar)
    TRUNCATED = "truncated"  # a model ran out of tokens (MAX_TOKENS)
    TOO_LARGE = "too_large"  # a download exceeded its size limit
    UNSUPPORTED_CONTENT = "unsupported_content"  # a content type not allowed by config
    FORBIDDEN_ADDRESS = "forbidden_address"  # SSRF guard refused the destination
    MAPPING = "mapping"  # a step's input mapping failed (missing path)
    CONFIG = "config"  # transformer config or secret missing / invalid
    INTERNAL = "internal"  # anything unexpected


#: The kinds retried when a policy names none.
DEFAULT_RETRY_ON: frozenset[ErrorKind] = frozenset(
    {ErrorKind.TIMEOUT, ErrorKind.CONNECTION, ErrorKind.RATE_LIMITED, ErrorKind.SERVER_ERROR}
)


class EngineError(Exception):
    """Base of every error the engine raises on purpose."""

    code = "engine_error"

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class ConfigurationError(EngineError):
    """Settings, a secret's environment variable, or a stored config is missing or wrong."""

    code = "configuration_error"


class DefinitionError(EngineError):
    """A workflow or transformer definition failed its checks; `problems` lists all of them."""

    code = "invalid_definition"

    def __init__(self, message: str, problems: list[Problem]) -> None:
        super().__init__(message, details=[p.as_dict() for p in problems])
        self.problems = problems

    def __str__(self) -> str:
        lines = [self.message] + [f"  - {p.location}: {p.message}" for p in self.problems]
        return "\n".join(lines)


class Problem:
    """One finding of a definition check: where (a dotted/JSON-pointer-like path) and what."""

    __slots__ = ("location", "message")

    def __init__(self, location: str, message: str) -> None:
        self.location = location
        self.message = message

    def as_dict(self) -> dict[str, str]:
        """JSON form used in API error details and CLI output."""
        return {"location": self.location, "message": self.message}

    def __repr__(self) -> str:
        return f"Problem({self.location!r}, {self.message!r})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Problem)
            and other.location == self.location
            and other.message == self.message
        )

    def __hash__(self) -> int:
        return hash((self.location, self.message))


class NotFoundError(EngineError):
    """A job, workflow or transformer does not exist (or is not visible to the caller)."""

    code = "not_found"


class ConflictError(EngineError):
    """The request conflicts with stored state (e.g. an idempotency key reused)."""

    code = "conflict"


class InputValidationError(EngineError):
    """A job's input_data does not match its workflow's input_schema."""

    code = "invalid_input"


class MappingError(EngineError):
    """A JSONPath in a mapping found nothing, or could not be evaluated."""

    code = "mapping_error"


class StepError(EngineError):
    """A step attempt failed. `kind` decides whether the retry policy retries it."""

    code = "step_failed"

    def __init__(self, kind: ErrorKind, message: str, *, details: Any = None) -> None:
        super().__init__(message, details=details)
        self.kind = kind

    def __str__(self) -> str:
        return f"{self.kind.value}: {self.message}"


class WorkflowDisabledError(ConflictError):
    """The workflow is disabled: it starts no new jobs."""

    code = "workflow_disabled"
